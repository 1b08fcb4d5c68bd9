// Bun's socket.write() may write only part of a buffer and does not keep the rest,
// so the tail is queued here and written from the `drain` handler.

export interface WritableSocket {
  write(data: Uint8Array): number;
}

export class SocketWriter {
  private pending: Uint8Array[] = [];
  private waiters: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];
  private failed: Error | null = null;

  constructor(private readonly socket: WritableSocket) {}

  /** Bytes accepted but not yet handed to the kernel. */
  get bufferedBytes(): number {
    return this.pending.reduce((n, b) => n + b.length, 0);
  }

  /** Queue `data`; true when it all went out at once (no need to wait for drain). */
  write(data: Uint8Array): boolean {
    if (this.failed) throw this.failed;
    if (this.pending.length > 0) {
      this.pending.push(data);
      return false;
    }
    const n = this.socket.write(data);
    if (n >= data.length) return true;
    this.pending.push(data.subarray(Math.max(n, 0)));
    return false;
  }

  /** Call from the socket's `drain` handler. */
  drain(): void {
    for (let head = this.pending[0]; head !== undefined; head = this.pending[0]) {
      const n = this.socket.write(head);
      if (n < head.length) {
        this.pending[0] = head.subarray(Math.max(n, 0));
        return;
      }
      this.pending.shift();
    }
    for (const w of this.waiters.splice(0)) w.resolve();
  }

  /** Resolves when everything queued so far has been written. */
  flushed(): Promise<void> {
    if (this.failed) return Promise.reject(this.failed);
    if (this.pending.length === 0) return Promise.resolve();
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** The socket is gone: drop the queue and fail anyone waiting. */
  fail(err: Error): void {
    this.failed ??= err;
    this.pending = [];
    for (const w of this.waiters.splice(0)) w.reject(err);
  }
}
