// ParsedSpec: a ComputeSpec plus the storage coordinates derived from it, with
// the legacy fallbacks to `cluster.settings` GUCs (upstream-lifecycle.md §2.6,
// upstream-api.md §2.11). Built once per incoming spec; the rest of the
// program never looks at the fallbacks again.
import { ConfigError } from "../errors.ts";
import {
  formatShardIndex,
  type TenantId,
  type TimelineId,
  tryParseTenantId,
  tryParseTimelineId,
  UNSHARDED_SHARD_INDEX,
} from "./ids.ts";
import type {
  ComputeMode,
  ComputeSpec,
  GenericOption,
  PageserverConnectionInfo,
  PageserverProtocol,
  PageserverShardInfo,
} from "./schema.ts";

export interface ParsedSpec {
  spec: ComputeSpec;
  pageserver_conninfo: PageserverConnectionInfo;
  /** `host:port` entries; empty for replicas/static computes without any. */
  safekeeper_connstrings: string[];
  storage_auth_token: string | null;
  tenant_id: TenantId;
  timeline_id: TimelineId;
  endpoint_storage_addr: string | null;
  endpoint_storage_token: string | null;
  mode: ComputeMode;
}

// ---------------------------------------------------------------------------
// GenericOptions lookup

export interface FoundOption {
  value: string;
  index: number;
}

/**
 * The first option named `name`; `undefined` when there is none or when that
 * first one has a null value (later options with the same name are not used).
 */
export function genericOptionsFindEntry(
  options: readonly GenericOption[] | null | undefined,
  name: string,
): FoundOption | undefined {
  if (!options) return undefined;
  const index = options.findIndex((o) => o.name === name);
  const value = options[index]?.value;
  if (index < 0 || value === null || value === undefined) return undefined;
  return { value, index };
}

/** Upstream `GenericOptionsSearch::find`: the value of the first option `name`. */
export function genericOptionsFind(
  options: readonly GenericOption[] | null | undefined,
  name: string,
): string | undefined {
  return genericOptionsFindEntry(options, name)?.value;
}

// ---------------------------------------------------------------------------
// Pageserver connection info

/**
 * Legacy conversion of a comma-separated list of libpq connstrings (one per
 * shard) into PageserverConnectionInfo. One entry means unsharded.
 */
export function pageserverConnInfoFromConnstr(
  connstr: string,
  stripeSize: number | null | undefined,
): PageserverConnectionInfo {
  const urls = connstr.split(",");
  const shard = (url: string): PageserverShardInfo => ({
    pageservers: [{ id: null, libpq_url: url, grpc_url: null }],
  });
  if (urls.length === 1) {
    return {
      shard_count: 0,
      stripe_size: null,
      shards: { [UNSHARDED_SHARD_INDEX]: shard(connstr) },
      prefer_protocol: "libpq",
    };
  }
  const shardCount = urls.length;
  if (stripeSize === null || stripeSize === undefined) {
    throw new ConfigError(`${shardCount} shards but no stripe_size`);
  }
  if (shardCount > 255) throw new ConfigError(`too many shards: ${shardCount}`);
  const shards: Record<string, PageserverShardInfo> = {};
  urls.forEach((url, i) => {
    shards[formatShardIndex(i, shardCount)] = shard(url);
  });
  return { shard_count: shardCount, stripe_size: stripeSize, shards, prefer_protocol: "libpq" };
}

/** Connection URL of the first pageserver of shard `shardNumber`. */
export function shardUrl(
  info: PageserverConnectionInfo,
  shardNumber: number,
  protocol: PageserverProtocol,
): string {
  const index = formatShardIndex(shardNumber, info.shard_count);
  const shard = info.shards[index];
  if (shard === undefined) {
    throw new ConfigError(`shard connection info missing for shard ${index}`);
  }
  const [first] = shard.pageservers;
  if (first === undefined) throw new ConfigError("must have at least one pageserver");
  if (protocol === "grpc") {
    if (first.grpc_url === null) throw new ConfigError(`no grpc_url for shard ${index}`);
    return first.grpc_url;
  }
  if (first.libpq_url === null) throw new ConfigError(`no libpq_url for shard ${index}`);
  return first.libpq_url;
}

// ---------------------------------------------------------------------------
// ComputeSpec -> ParsedSpec

function settingPath(index: number): string {
  return `spec.cluster.settings[${index}].value`;
}

/** Rust `str::parse::<u32>`: decimal digits with an optional `+`. */
function parseU32(text: string): number | undefined {
  if (!/^\+?\d+$/.test(text)) return undefined;
  const n = Number(text);
  return n <= 0xffff_ffff ? n : undefined;
}

function resolvePageserverConnInfo(spec: ComputeSpec): PageserverConnectionInfo {
  if (spec.pageserver_connection_info !== null) return spec.pageserver_connection_info;
  if (spec.pageserver_connstring !== null) {
    return withPath("spec.pageserver_connstring", () =>
      pageserverConnInfoFromConnstr(spec.pageserver_connstring ?? "", spec.shard_stripe_size),
    );
  }
  const settings = spec.cluster.settings;
  const connstr = genericOptionsFindEntry(settings, "neon.pageserver_connstring");
  if (connstr !== undefined) {
    const stripe = genericOptionsFind(settings, "neon.stripe_size");
    return withPath(settingPath(connstr.index), () =>
      pageserverConnInfoFromConnstr(
        connstr.value,
        stripe === undefined ? undefined : parseU32(stripe),
      ),
    );
  }
  throw new ConfigError("pageserver connection information should be provided", {
    path: "spec.pageserver_connection_info",
  });
}

function withPath<T>(path: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof ConfigError && e.path === undefined) {
      throw new ConfigError(e.message, { path, cause: e.cause });
    }
    throw e;
  }
}

function resolveSafekeepers(spec: ComputeSpec): string[] {
  if (spec.safekeeper_connstrings.length > 0) return [...spec.safekeeper_connstrings];
  if (spec.mode.kind !== "primary") return [];
  const guc = genericOptionsFind(spec.cluster.settings, "neon.safekeepers");
  if (guc === undefined) {
    throw new ConfigError("safekeeper connstrings should be provided", {
      path: "spec.safekeeper_connstrings",
    });
  }
  // No trimming, as upstream: an empty GUC yields [""], which passes validation.
  return guc.split(",");
}

function resolveId<T>(
  field: T | null,
  spec: ComputeSpec,
  kind: "tenant" | "timeline",
  parse: (text: string) => T | undefined,
): T {
  if (field !== null) return field;
  const found = genericOptionsFindEntry(spec.cluster.settings, `neon.${kind}_id`);
  if (found === undefined) {
    throw new ConfigError(`${kind} id should be provided`, { path: `spec.${kind}_id` });
  }
  const id = parse(found.value);
  if (id === undefined) {
    throw new ConfigError(`invalid ${kind} id`, {
      path: settingPath(found.index),
      cause: new Error(`${JSON.stringify(found.value)} is not 32 hex characters`),
    });
  }
  return id;
}

/** Upstream `ParsedSpec::validate`, which only applies to primaries. */
function validate(parsed: ParsedSpec): void {
  if (parsed.mode.kind !== "primary") return;
  const path = "spec.safekeeper_connstrings";
  if (parsed.safekeeper_connstrings.length === 0) {
    throw new ConfigError("safekeeper_connstrings is empty", { path });
  }
  const sorted = [...parsed.safekeeper_connstrings].sort();
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i] === sorted[i - 1]) {
      throw new ConfigError(`duplicate entry in safekeeper_connstrings: ${sorted[i]}!`, { path });
    }
  }
}

/**
 * Derives and validates a ParsedSpec. Throws ConfigError with upstream's
 * texts (`tenant id should be provided`, `duplicate entry in
 * safekeeper_connstrings: <entry>!`, ...); `.path` points at the culprit.
 */
export function toParsedSpec(spec: ComputeSpec): ParsedSpec {
  const pageserver_conninfo = resolvePageserverConnInfo(spec);
  const safekeeper_connstrings = resolveSafekeepers(spec);
  const tenant_id = resolveId(spec.tenant_id, spec, "tenant", tryParseTenantId);
  const timeline_id = resolveId(spec.timeline_id, spec, "timeline", tryParseTimelineId);
  const settings = spec.cluster.settings;
  const parsed: ParsedSpec = {
    spec,
    pageserver_conninfo,
    safekeeper_connstrings,
    storage_auth_token: spec.storage_auth_token,
    tenant_id,
    timeline_id,
    endpoint_storage_addr:
      spec.endpoint_storage_addr ??
      genericOptionsFind(settings, "neon.endpoint_storage_addr") ??
      null,
    endpoint_storage_token:
      spec.endpoint_storage_token ??
      genericOptionsFind(settings, "neon.endpoint_storage_token") ??
      null,
    mode: spec.mode,
  };
  validate(parsed);
  return parsed;
}
