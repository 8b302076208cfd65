/**
 * WHIP (RFC 9725) publishing from the browser: go live with a camera `MediaStream`.
 *
 * The standard exchange, without trickle ICE (the server answers PATCH with 405):
 * create a send-only offer, wait until ICE gathering is complete so the offer holds
 * every candidate, POST it as `application/sdp` with the owner's bearer token, apply
 * the `201` answer, and DELETE the `Location` resource to stop.
 *
 * H.264 is put first where the browser lets a page order codecs; the server decodes
 * H.264 or VP8 and re-encodes either way, so this is a preference, not a need.
 * Plain TypeScript, no dependencies.
 */

export interface WhipPublication {
  /** End the publish: DELETE the WHIP resource, then close the connection. Idempotent. */
  stop(): Promise<void>;
  /** The peer connection, e.g. to watch `connectionState` or read `getStats()`. */
  pc: RTCPeerConnection;
}

/** A refused offer: the HTTP status and the server's `{"error": {code, message}}`. */
export class WhipError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "WhipError";
  }
}

/** How long ICE gathering may take before the offer is sent with what it has. */
const GATHERING_TIMEOUT_MS = 5000;

export async function publishWhip(
  endpointUrl: string,
  stream: MediaStream,
  token: string,
): Promise<WhipPublication> {
  const pc = new RTCPeerConnection({ bundlePolicy: "max-bundle" });
  try {
    for (const track of stream.getTracks()) {
      const transceiver = pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
      if (track.kind === "video") preferH264(transceiver);
    }
    await pc.setLocalDescription(await pc.createOffer());
    await iceGatheringComplete(pc);
    const offer = pc.localDescription?.sdp;
    if (!offer) throw new WhipError(0, "no_offer", "the browser made no SDP offer");

    const response = await fetch(endpointUrl, {
      method: "POST",
      headers: { "Content-Type": "application/sdp", Authorization: `Bearer ${token}` },
      body: offer,
    });
    if (response.status !== 201) throw await errorOf(response);
    const location = response.headers.get("Location");
    const resource = location ? new URL(location, absolute(endpointUrl)).toString() : null;
    await pc.setRemoteDescription({ type: "answer", sdp: await response.text() });

    let stopping: Promise<void> | null = null;
    const stop = (): Promise<void> => {
      stopping ??= (async () => {
        try {
          if (resource) {
            await fetch(resource, {
              method: "DELETE",
              headers: { Authorization: `Bearer ${token}` },
            });
          }
        } finally {
          pc.close();
        }
      })();
      return stopping;
    };
    return { stop, pc };
  } catch (error) {
    pc.close();
    throw error;
  }
}

/** Put H.264 first among the video codecs, where the browser supports ordering. */
function preferH264(transceiver: RTCRtpTransceiver): void {
  if (typeof transceiver.setCodecPreferences !== "function") return;
  const capabilities =
    RTCRtpReceiver.getCapabilities?.("video") ?? RTCRtpSender.getCapabilities?.("video");
  if (!capabilities) return;
  const isH264 = (c: RTCRtpCodec) => c.mimeType.toLowerCase() === "video/h264";
  const ordered = [
    ...capabilities.codecs.filter(isH264),
    ...capabilities.codecs.filter((c) => !isH264(c)),
  ];
  try {
    transceiver.setCodecPreferences(ordered);
  } catch {
    // Some browsers check against other capabilities: keep their default order.
  }
}

/** Resolves once ICE gathering is complete, or after GATHERING_TIMEOUT_MS. */
function iceGatheringComplete(pc: RTCPeerConnection): Promise<void> {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    };
    const check = () => {
      if (pc.iceGatheringState === "complete") done();
    };
    const timer = setTimeout(done, GATHERING_TIMEOUT_MS);
    pc.addEventListener("icegatheringstatechange", check);
  });
}

async function errorOf(response: Response): Promise<WhipError> {
  let code = "whip_failed";
  let message = `WHIP publish failed with HTTP ${response.status}`;
  try {
    const body = (await response.json()) as { error?: { code?: string; message?: string } };
    code = body.error?.code ?? code;
    message = body.error?.message ?? message;
  } catch {
    // Not the JSON error shape (a proxy's page): keep the generic message.
  }
  return new WhipError(response.status, code, message);
}

function absolute(url: string): string {
  return typeof window === "undefined" ? url : new URL(url, window.location.href).toString();
}
