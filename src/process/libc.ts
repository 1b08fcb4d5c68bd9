// The few libc calls Bun has no API for (waitpid of one pid, setrlimit,
// madvise), through bun:ffi. Opened once, on first use: a libc that cannot be
// loaded (musl without libc.so.6) makes each caller degrade, never crash.

import { dlopen, FFIType, read } from "bun:ffi";
import { constants } from "node:os";

function openLibc() {
  return dlopen("libc.so.6", {
    waitpid: { args: [FFIType.i32, FFIType.ptr, FFIType.i32], returns: FFIType.i32 },
    setrlimit: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
    madvise: { args: [FFIType.u64, FFIType.u64, FFIType.i32], returns: FFIType.i32 },
    getpagesize: { args: [], returns: FFIType.i32 },
    __errno_location: { args: [], returns: FFIType.ptr },
  }).symbols;
}

export type Libc = ReturnType<typeof openLibc>;
let libcCache: Libc | undefined;

/** libc, opened once; throws when it cannot be loaded. */
export function libc(): Libc {
  libcCache ??= openLibc();
  return libcCache;
}

export type FfiResult = { ok: true } | { ok: false; errno: number; code: string; message: string };

/** libc, or the failure to report instead of throwing. */
export function tryLibc(): { ok: true; libc: Libc } | (FfiResult & { ok: false }) {
  try {
    return { ok: true, libc: libc() };
  } catch (err) {
    return { ok: false, errno: 0, code: "ELIBACC", message: `cannot load libc.so.6: ${err}` };
  }
}

export function errnoName(errno: number): string {
  for (const [name, n] of Object.entries(constants.errno)) if (n === errno) return name;
  return `errno ${errno}`;
}

export function lastErrno(l: Libc): number {
  const p = l.__errno_location();
  return p === null ? 0 : read.i32(p);
}

export function failure(errno: number, what: string): FfiResult & { ok: false } {
  const code = errnoName(errno);
  return { ok: false, errno, code, message: `${what} failed: ${code}` };
}
