import { describe, expect, test } from "bun:test";
import {
  encode,
  escapeHelp,
  escapeLabelValue,
  formatValue,
  type MetricFamily,
  TEXT_CONTENT_TYPE,
} from "./prometheus.ts";

describe("formatValue: Rust f64 Display", () => {
  const cases: [number, string][] = [
    [0, "0"],
    [1, "1"],
    [3, "3"],
    [-7, "-7"],
    [42, "42"],
    [4294967295, "4294967295"],
    [2 ** 53, "9007199254740992"],
    [1.5, "1.5"],
    [0.1, "0.1"],
    [0.1 + 0.2, "0.30000000000000004"],
    [1234.5678, "1234.5678"],
    [-2.25, "-2.25"],
    [1e-7, "0.0000001"],
    [1.5e-10, "0.00000000015"],
    [-3.2e-8, "-0.000000032"],
    [1e21, "1000000000000000000000"],
    [1.25e22, "12500000000000000000000"],
    [-0, "-0"],
    [Number.POSITIVE_INFINITY, "+Inf"],
    [Number.NEGATIVE_INFINITY, "-Inf"],
    [Number.NaN, "NaN"],
  ];
  for (const [v, want] of cases) {
    test(`${String(v)} -> ${want}`, () => expect(formatValue(v)).toBe(want));
  }

  test("expanded forms still round-trip", () => {
    for (const v of [1e-7, 1.5e-10, 1e21, 1.25e22, 123456789e-15]) {
      expect(Number(formatValue(v))).toBe(v);
    }
  });
});

describe("escaping", () => {
  const labelCases: [string, string][] = [
    ["plain", "plain"],
    ["", ""],
    ["a\\b", "a\\\\b"],
    ['say "hi"', 'say \\"hi\\"'],
    ["two\nlines", "two\\nlines"],
    ['\\n"\n', '\\\\n\\"\\n'],
    ["tab\tand ünïcode", "tab\tand ünïcode"],
  ];
  for (const [raw, want] of labelCases) {
    test(`label value ${JSON.stringify(raw)}`, () => expect(escapeLabelValue(raw)).toBe(want));
  }

  const helpCases: [string, string][] = [
    ["Whether compute_ctl is running", "Whether compute_ctl is running"],
    ["back\\slash", "back\\\\slash"],
    ["new\nline", "new\\nline"],
    ['quotes "stay"', 'quotes "stay"'],
  ];
  for (const [raw, want] of helpCases) {
    test(`help ${JSON.stringify(raw)}`, () => expect(escapeHelp(raw)).toBe(want));
  }
});

describe("encode", () => {
  const fam = (
    name: string,
    samples: MetricFamily["samples"],
    extra: Partial<MetricFamily> = {},
  ): MetricFamily => ({ name, help: `${name} help`, type: "counter", samples, ...extra });

  test("families keep the given order, not sorted", () => {
    const text = encode([
      fam("zeta_total", [{ labels: {}, value: 1 }]),
      fam("alpha", [{ labels: {}, value: 2 }], { type: "gauge" }),
    ]);
    expect(text).toBe(
      [
        "# HELP zeta_total zeta_total help",
        "# TYPE zeta_total counter",
        "zeta_total 1",
        "# HELP alpha alpha help",
        "# TYPE alpha gauge",
        "alpha 2",
        "",
      ].join("\n"),
    );
  });

  test("a family without samples is omitted entirely", () => {
    const text = encode([
      fam("a_total", []),
      fam("b_total", [{ labels: {}, value: 0 }]),
      fam("c_total", []),
    ]);
    expect(text).toBe("# HELP b_total b_total help\n# TYPE b_total counter\nb_total 0\n");
    expect(encode([fam("x_total", [])])).toBe("");
    expect(encode([])).toBe("");
  });

  test("label pairs sorted by name, values escaped, sample order kept", () => {
    const text = encode([
      fam("m", [
        {
          labels: { version: "1.0", extension_name: 'we"ird\\', owned_by_superuser: "1" },
          value: 3,
        },
        { labels: { version: "2\n0", extension_name: "neon", owned_by_superuser: "0" }, value: 1 },
      ]),
    ]);
    expect(text.split("\n").slice(2)).toEqual([
      'm{extension_name="we\\"ird\\\\",owned_by_superuser="1",version="1.0"} 3',
      'm{extension_name="neon",owned_by_superuser="0",version="2\\n0"} 1',
      "",
    ]);
  });

  test("ints without a decimal point, floats shortest", () => {
    const text = encode([
      fam("g", [
        { labels: { k: "a" }, value: 5 },
        { labels: { k: "b" }, value: 12.5 },
        { labels: { k: "c" }, value: 1 / 3 },
      ]),
    ]);
    expect(text).toContain('g{k="a"} 5\n');
    expect(text).toContain('g{k="b"} 12.5\n');
    expect(text).toContain('g{k="c"} 0.3333333333333333\n');
  });

  test("HELP escaped; empty HELP line left out", () => {
    expect(encode([fam("h", [{ labels: {}, value: 0 }], { help: "a\\b\nc" })])).toBe(
      "# HELP h a\\\\b\\nc\n# TYPE h counter\nh 0\n",
    );
    expect(encode([fam("h", [{ labels: {}, value: 0 }], { help: "" })])).toBe(
      "# TYPE h counter\nh 0\n",
    );
  });

  test("content type is upstream's, without charset", () => {
    expect(TEXT_CONTENT_TYPE).toBe("text/plain; version=0.0.4");
  });
});
