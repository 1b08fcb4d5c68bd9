// Prometheus text exposition format 0.0.4, as upstream's encoder (the Rust
// `prometheus` crate's TextEncoder) writes it: HELP then TYPE per family, label
// pairs sorted by name, values in Rust's f64 Display (shortest round-trip, no
// exponent, integers without a decimal point). Pure: families in, text out.

/** The exact `Content-Type` upstream's `GET /metrics` sends. */
export const TEXT_CONTENT_TYPE = "text/plain; version=0.0.4";

export type MetricType = "counter" | "gauge";

export interface Sample {
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface MetricFamily {
  readonly name: string;
  readonly help: string;
  readonly type: MetricType;
  readonly samples: readonly Sample[];
}

/** HELP text: `\` and newline are escaped, `"` is not. */
export function escapeHelp(s: string): string {
  return s.replaceAll("\\", "\\\\").replaceAll("\n", "\\n");
}

export function escapeLabelValue(s: string): string {
  return s.replaceAll("\\", "\\\\").replaceAll("\n", "\\n").replaceAll('"', '\\"');
}

// JS switches to exponent form below 1e-6 and from 1e21; Rust never does.
function expandExponent(s: string): string {
  const m = /^(-?)(\d)(?:\.(\d+))?e([+-]\d+)$/.exec(s);
  if (m === null) return s;
  const sign = m[1] ?? "";
  const digits = (m[2] ?? "") + (m[3] ?? "");
  const before = 1 + Number(m[4]); // digits left of the decimal point
  if (before <= 0) return `${sign}0.${"0".repeat(-before)}${digits}`;
  if (before >= digits.length) return sign + digits + "0".repeat(before - digits.length);
  return `${sign}${digits.slice(0, before)}.${digits.slice(before)}`;
}

/**
 * A sample value in Rust's f64 Display form: `0`, `3`, `1.5`, `0.0000001`,
 * `-0`. Non-finite values use the exposition format's `+Inf`/`-Inf`/`NaN`.
 */
export function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Number.POSITIVE_INFINITY) return "+Inf";
  if (v === Number.NEGATIVE_INFINITY) return "-Inf";
  if (Object.is(v, -0)) return "-0";
  return expandExponent(String(v));
}

function formatLabels(labels: Readonly<Record<string, string>>): string {
  const names = Object.keys(labels);
  if (names.length === 0) return "";
  names.sort(); // upstream sorts label pairs by name
  return `{${names.map((n) => `${n}="${escapeLabelValue(labels[n] ?? "")}"`).join(",")}}`;
}

/**
 * Families in the given order; a family with no samples is left out entirely,
 * and an empty HELP is not written (as upstream).
 */
export function encode(families: Iterable<MetricFamily>): string {
  let out = "";
  for (const f of families) {
    if (f.samples.length === 0) continue;
    if (f.help !== "") out += `# HELP ${f.name} ${escapeHelp(f.help)}\n`;
    out += `# TYPE ${f.name} ${f.type}\n`;
    for (const s of f.samples)
      out += `${f.name}${formatLabels(s.labels)} ${formatValue(s.value)}\n`;
  }
  return out;
}
