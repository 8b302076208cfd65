// A value to copy into OBS: the RTMP URL shown, the stream key hidden until revealed.
import { useState } from "react";

async function copy(text: string): Promise<boolean> {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // No clipboard permission (plain http on another host): select-and-copy fallback.
    const area = document.createElement("textarea");
    area.value = text;
    document.body.appendChild(area);
    area.select();
    const ok = document.execCommand("copy");
    area.remove();
    return ok;
  }
}

export function CopyField(props: { label: string; value: string; secret?: boolean; name: string }) {
  const [shown, setShown] = useState(!props.secret);
  const [copied, setCopied] = useState(false);
  return (
    <div className="copy-field" data-field={props.name}>
      <span className="label">{props.label}</span>
      <code data-testid={`${props.name}-value`}>{shown ? props.value : "•".repeat(24)}</code>
      {props.secret ? (
        <button type="button" onClick={() => setShown(!shown)} aria-label={`${shown ? "Hide" : "Reveal"} ${props.label}`}>
          {shown ? "Hide" : "Reveal"}
        </button>
      ) : null}
      <button
        type="button"
        aria-label={`Copy ${props.label}`}
        onClick={() => void copy(props.value).then((ok) => setCopied(ok))}
      >
        {copied ? "Copied" : "Copy"}
      </button>
    </div>
  );
}
