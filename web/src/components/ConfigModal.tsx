// The spec's stream configuration modal: title, description, quality, bitrate,
// AI/HDR/ray-tracing toggles, privacy, category, tags, NSFW.
import { useState, type FormEvent } from "react";

import type { StreamConfig, StreamPrivacy, StreamQuality } from "../api/types";

/** Each tier's default (and highest) bitrate in kbps, as the API applies it. */
export const TIER_KBPS: Record<StreamQuality, number> = {
  "1080p": 8000,
  "4K": 25000,
  "8K": 50000,
  "20K": 100000,
};

const PRIVACY: { value: StreamPrivacy; label: string }[] = [
  { value: "public", label: "Public: everyone" },
  { value: "friends", label: "Friends: your accepted friends" },
  { value: "private", label: "Private: people you invite" },
];

export function ConfigModal(props: {
  onSubmit: (config: StreamConfig) => Promise<unknown>;
  onClose: () => void;
  busy: boolean;
  error: string | null;
}) {
  const [title, setTitle] = useState("");
  const [description, setDescription] = useState("");
  const [quality, setQuality] = useState<StreamQuality>("1080p");
  const [bitrate, setBitrate] = useState(TIER_KBPS["1080p"]);
  const [enableAI, setEnableAI] = useState(false);
  const [enableHDR, setEnableHDR] = useState(false);
  const [enableRayTracing, setEnableRayTracing] = useState(false);
  const [privacy, setPrivacy] = useState<StreamPrivacy>("public");
  const [category, setCategory] = useState("general");
  const [tags, setTags] = useState("");
  const [isNSFW, setIsNSFW] = useState(false);

  const pickQuality = (q: StreamQuality) => {
    setQuality(q);
    setBitrate(TIER_KBPS[q]);
  };

  const submit = (e: FormEvent) => {
    e.preventDefault();
    void props.onSubmit({
      title,
      description,
      quality,
      bitrate,
      enableAI,
      enableHDR,
      enableRayTracing,
      privacy,
      category: category.trim() || "general",
      tags: tags
        .split(",")
        .map((t) => t.trim().toLowerCase())
        .filter(Boolean),
      isNSFW,
    });
  };

  return (
    <div className="modal-backdrop">
      <form className="modal" role="dialog" aria-label="Stream configuration" onSubmit={submit}>
        <h2>New stream</h2>
        <label>
          Title
          <input name="title" required maxLength={255} value={title} onChange={(e) => setTitle(e.target.value)} />
        </label>
        <label>
          Description
          <textarea name="description" maxLength={5000} value={description} onChange={(e) => setDescription(e.target.value)} />
        </label>
        <div className="row">
          <label>
            Quality
            <select name="quality" value={quality} onChange={(e) => pickQuality(e.target.value as StreamQuality)}>
              {Object.keys(TIER_KBPS).map((q) => (
                <option key={q}>{q}</option>
              ))}
            </select>
          </label>
          <label>
            Bitrate (kbps, at most {TIER_KBPS[quality]})
            <input
              name="bitrate"
              type="number"
              min={1}
              max={TIER_KBPS[quality]}
              value={bitrate}
              onChange={(e) => setBitrate(Number(e.target.value))}
            />
          </label>
        </div>
        <fieldset className="toggles">
          <legend>Processing</legend>
          <label>
            <input type="checkbox" name="enableAI" checked={enableAI} onChange={(e) => setEnableAI(e.target.checked)} /> AI
            enhancement (super-resolution rungs above the source)
          </label>
          <label>
            <input type="checkbox" name="enableHDR" checked={enableHDR} onChange={(e) => setEnableHDR(e.target.checked)} /> HDR
          </label>
          <label>
            <input
              type="checkbox"
              name="enableRayTracing"
              checked={enableRayTracing}
              onChange={(e) => setEnableRayTracing(e.target.checked)}
            />{" "}
            Ray tracing
          </label>
        </fieldset>
        <div className="row">
          <label>
            Privacy
            <select name="privacy" value={privacy} onChange={(e) => setPrivacy(e.target.value as StreamPrivacy)}>
              {PRIVACY.map((p) => (
                <option key={p.value} value={p.value}>
                  {p.label}
                </option>
              ))}
            </select>
          </label>
          <label>
            Category
            <input name="category" maxLength={50} value={category} onChange={(e) => setCategory(e.target.value)} />
          </label>
        </div>
        <label>
          Tags (comma-separated)
          <input name="tags" value={tags} onChange={(e) => setTags(e.target.value)} placeholder="gen1, ai" />
        </label>
        <label>
          <input type="checkbox" name="isNSFW" checked={isNSFW} onChange={(e) => setIsNSFW(e.target.checked)} /> Adult
          content (NSFW): scored and flagged, never ended by moderation
        </label>
        {props.error ? <p className="error" role="alert">{props.error}</p> : null}
        <div className="actions">
          <button type="button" onClick={props.onClose}>
            Cancel
          </button>
          <button type="submit" className="primary" disabled={props.busy || !title.trim()}>
            Create stream
          </button>
        </div>
      </form>
    </div>
  );
}
