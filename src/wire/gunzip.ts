// Gzip decompression of a byte stream (the `--gzip` basebackup) and a byte counter
// for the compressed side (`basebackup_bytes`).

import { ComputeCtlError, errorMessage } from "../errors.ts";

/** The compressed stream is not valid gzip, or ends inside a member. */
export class GzipError extends ComputeCtlError {
  override readonly name = "GzipError";
}

/**
 * Decompress a gzip stream. Concatenated members (`cat a.gz b.gz`) decompress to
 * the concatenated data. Errors of the input stream pass through unchanged;
 * errors of the decompression itself become `GzipError`. Cancelling the result
 * cancels the input.
 */
export function gunzip(stream: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
  // Remember the input's own error so it is not mislabelled as a gzip error.
  let inputError: { error: unknown } | undefined;
  const input = passThrough(stream, undefined, (error) => {
    inputError = { error };
  });
  // The typings want ArrayBuffer-backed chunks; at run time any Uint8Array is accepted.
  const inflate = new DecompressionStream("gzip") as unknown as ReadableWritablePair<
    Uint8Array,
    Uint8Array
  >;
  const reader = input.pipeThrough(inflate).getReader();
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          const { done, value } = await reader.read();
          if (done) controller.close();
          else controller.enqueue(value);
        } catch (err) {
          if (inputError !== undefined && inputError.error === err) controller.error(err);
          else
            controller.error(
              new GzipError(`invalid gzip stream: ${errorMessage(err)}`, { cause: err }),
            );
        }
      },
      cancel(reason) {
        return reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}

/**
 * Pass a stream through unchanged, calling `onBytes` with each chunk's size and
 * the running total.
 */
export function countBytes(
  stream: ReadableStream<Uint8Array>,
  onBytes: (chunkBytes: number, totalBytes: number) => void,
): ReadableStream<Uint8Array> {
  let total = 0;
  return passThrough(stream, (chunk) => {
    total += chunk.byteLength;
    onBytes(chunk.byteLength, total);
  });
}

function passThrough(
  stream: ReadableStream<Uint8Array>,
  onChunk?: (chunk: Uint8Array) => void,
  onError?: (err: unknown) => void,
): ReadableStream<Uint8Array> {
  const reader = stream.getReader();
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        const result = await reader.read().catch((err: unknown) => {
          onError?.(err);
          controller.error(err);
          return undefined;
        });
        if (result === undefined) return;
        if (result.done) {
          controller.close();
          return;
        }
        onChunk?.(result.value);
        controller.enqueue(result.value);
      },
      cancel(reason) {
        return reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}
