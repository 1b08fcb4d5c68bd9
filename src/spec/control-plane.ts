// Fetching the ComputeConfig from the control plane (`compute_ctl -p URI
// --compute-id ID`), upstream-lifecycle.md §1.5.2: three attempts 100 ms apart,
// retrying only transport errors, undecodable 200 bodies, 502 and 503.
import { ComputeCtlError, errorMessage } from "../errors.ts";
import { httpStatusLabel, UNKNOWN_HTTP_STATUS_LABEL } from "./http-status.ts";
import { parseControlPlaneResponse, parseJsonText } from "./parse.ts";
import type { ComputeConfig, ControlPlaneConfigResponse } from "./schema.ts";

export class ControlPlaneError extends ComputeCtlError {
  override readonly name = "ControlPlaneError";
  /** Whether another attempt may succeed (transport error, bad body, 502, 503). */
  readonly retryable: boolean;

  constructor(message: string, options: { retryable: boolean; cause?: unknown }) {
    super(message, { cause: options.cause });
    this.retryable = options.retryable;
  }
}

export type FetchLike = (url: string, init: RequestInit) => Promise<Response>;

export interface ControlPlaneLog {
  info(message: string): void;
  error(message: string): void;
}

export interface FetchConfigOptions {
  /** `-p/--control-plane-uri`, used as is (a trailing `/` gives `//compute/...`, as upstream). */
  baseUri: string;
  computeId: string;
  /** `$NEON_CONTROL_PLANE_TOKEN`; sent as `Bearer <token>` even when empty. */
  token: string;
  fetch?: FetchLike;
  sleep?: (ms: number) => Promise<void>;
  /** Called once per attempt with `200 OK`-style label or `unknown` (metric hook). */
  onAttempt?: (httpStatusLabel: string) => void;
  log?: ControlPlaneLog;
  /** Per-request deadline; upstream's blocking reqwest client has 30 s. */
  timeoutMs?: number;
}

export const CONTROL_PLANE_MAX_ATTEMPTS = 3;
export const CONTROL_PLANE_RETRY_DELAY_MS = 100;
export const CONTROL_PLANE_TIMEOUT_MS = 30_000;

export function controlPlaneSpecUrl(baseUri: string, computeId: string): string {
  return `${baseUri}/compute/api/v2/computes/${computeId}/spec`;
}

async function requestOnce(
  url: string,
  opts: FetchConfigOptions,
): Promise<ControlPlaneConfigResponse> {
  const fetchFn: FetchLike = opts.fetch ?? ((u, init) => fetch(u, init));
  const signal = AbortSignal.timeout(opts.timeoutMs ?? CONTROL_PLANE_TIMEOUT_MS);
  let res: Response;
  try {
    res = await fetchFn(url, {
      method: "GET",
      headers: { Authorization: `Bearer ${opts.token}` },
      signal,
    });
  } catch (e) {
    opts.onAttempt?.(UNKNOWN_HTTP_STATUS_LABEL);
    throw new ControlPlaneError(`control plane request failed: ${errorMessage(e)}`, {
      retryable: true,
      cause: e,
    });
  }
  const label = httpStatusLabel(res.status);
  opts.onAttempt?.(label);
  if (res.status !== 200) {
    await res.body?.cancel().catch(() => {});
    if (res.status === 503) {
      throw new ControlPlaneError("control plane is temporarily unavailable", { retryable: true });
    }
    if (res.status === 502) {
      throw new ControlPlaneError("control plane request failed with 502", { retryable: true });
    }
    throw new ControlPlaneError(`unexpected control plane response status code: ${label}`, {
      retryable: false,
    });
  }
  try {
    return parseControlPlaneResponse(parseJsonText(await res.text()));
  } catch (e) {
    throw new ControlPlaneError(
      `could not deserialize control plane response: ${errorMessage(e)}`,
      { retryable: true, cause: e },
    );
  }
}

/**
 * GETs `{baseUri}/compute/api/v2/computes/{computeId}/spec` and turns the
 * answer into a ComputeConfig (`spec` null when the compute is `empty`).
 * Throws ControlPlaneError; after three failed attempts the message is
 * `Exhausted all attempts to retrieve the config from the control plane` with
 * the last failure as `cause`.
 */
export async function fetchConfigFromControlPlane(
  opts: FetchConfigOptions,
): Promise<ComputeConfig> {
  const url = controlPlaneSpecUrl(opts.baseUri, opts.computeId);
  const sleep = opts.sleep ?? ((ms: number) => Bun.sleep(ms));
  opts.log?.info(`getting config from control plane: ${url}`);
  let lastError: ControlPlaneError | undefined;
  for (let attempt = 1; attempt <= CONTROL_PLANE_MAX_ATTEMPTS; attempt++) {
    try {
      const resp = await requestOnce(url, opts);
      if (resp.status === "attached" && resp.spec === null) {
        throw new ControlPlaneError("compute is attached, but spec is empty", { retryable: false });
      }
      return { spec: resp.spec, compute_ctl_config: resp.compute_ctl_config };
    } catch (e) {
      if (!(e instanceof ControlPlaneError) || !e.retryable) throw e;
      opts.log?.error(`attempt ${attempt} to get config failed with: ${e.message}`);
      lastError = e;
      // Upstream also sleeps after the last attempt.
      await sleep(CONTROL_PLANE_RETRY_DELAY_MS);
    }
  }
  throw new ControlPlaneError(
    "Exhausted all attempts to retrieve the config from the control plane",
    {
      retryable: false,
      cause: lastError,
    },
  );
}
