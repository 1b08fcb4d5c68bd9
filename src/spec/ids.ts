// Storage identifiers: tenant/timeline ids (16 bytes as 32 hex chars) and the
// ShardIndex map key ("NNCC": shard number and shard count, 2 hex digits each).
import { ConfigError } from "../errors.ts";

export type TenantId = string & { readonly __brand: "TenantId" };
export type TimelineId = string & { readonly __brand: "TimelineId" };

const HEX_ID = /^[0-9A-Fa-f]{32}$/;

export function isHexId(text: string): boolean {
  return HEX_ID.test(text);
}

/** Lowercased tenant id, or `undefined` if `text` is not 32 hex characters. */
export function tryParseTenantId(text: string): TenantId | undefined {
  return isHexId(text) ? (text.toLowerCase() as TenantId) : undefined;
}

export function tryParseTimelineId(text: string): TimelineId | undefined {
  return isHexId(text) ? (text.toLowerCase() as TimelineId) : undefined;
}

export function invalidIdMessage(kind: "tenant" | "timeline", text: string): string {
  return `invalid ${kind} id ${JSON.stringify(text)} (expected 32 hex characters)`;
}

export function parseTenantId(text: string): TenantId {
  const id = tryParseTenantId(text);
  if (id === undefined) throw new ConfigError(invalidIdMessage("tenant", text));
  return id;
}

export function parseTimelineId(text: string): TimelineId {
  const id = tryParseTimelineId(text);
  if (id === undefined) throw new ConfigError(invalidIdMessage("timeline", text));
  return id;
}

/** Which shard of how many; shard_count 0 means "unsharded" (legacy layout). */
export interface ShardIndex {
  shardNumber: number;
  shardCount: number;
}

export const UNSHARDED_SHARD_INDEX = "0000";

function hexByte(n: number): string {
  if (!Number.isInteger(n) || n < 0 || n > 255) throw new RangeError(`not a u8: ${n}`);
  return n.toString(16).padStart(2, "0");
}

/** The `"NNCC"` key, lowercase, e.g. shard 1 of 2 is `"0102"`. */
export function formatShardIndex(shardNumber: number, shardCount: number): string {
  return `${hexByte(shardNumber)}${hexByte(shardCount)}`;
}

const SHARD_INDEX = /^[0-9A-Fa-f]{4}$/;

export function tryParseShardIndex(text: string): ShardIndex | undefined {
  if (!SHARD_INDEX.test(text)) return undefined;
  return {
    shardNumber: Number.parseInt(text.slice(0, 2), 16),
    shardCount: Number.parseInt(text.slice(2, 4), 16),
  };
}

export function invalidShardIndexMessage(text: string): string {
  return `invalid shard index ${JSON.stringify(text)} (expected 4 hex characters "NNCC")`;
}

export function parseShardIndex(text: string): ShardIndex {
  const index = tryParseShardIndex(text);
  if (index === undefined) throw new ConfigError(invalidShardIndexMessage(text));
  return index;
}

/** Upstream TenantShardId display: the bare tenant when unsharded, else `<tenant>-NNCC`. */
export function formatTenantShardId(tenantId: TenantId, index: ShardIndex): string {
  if (index.shardCount === 0) return tenantId;
  return `${tenantId}-${formatShardIndex(index.shardNumber, index.shardCount)}`;
}
