// Where is a JSON text broken? JSON.parse in Bun says what but not where, so
// after it fails we re-scan the text to report line and column like serde_json
// (1-based). The scanner is iterative so deep nesting cannot overflow the stack.

export interface JsonSyntaxError {
  /** 0-based UTF-16 offset of the offending character (text length at end of input). */
  offset: number;
  line: number;
  column: number;
  reason: string;
}

type Expect = "value" | "value_or_end" | "key" | "key_or_end" | "colon" | "comma_or_end" | "eof";

const WS = new Set([" ", "\t", "\n", "\r"]);
const ESCAPES = new Set(['"', "\\", "/", "b", "f", "n", "r", "t"]);
const HEX4 = /^[0-9A-Fa-f]{4}$/;
const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;

export function positionOf(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, column: offset - lineStart + 1 };
}

function describeChar(ch: string | undefined): string {
  if (ch === undefined) return "end of input";
  return JSON.stringify(ch);
}

/** The first syntax error of `text`, or `undefined` if it is valid JSON. */
export function findJsonSyntaxError(text: string): JsonSyntaxError | undefined {
  const stack: ("{" | "[")[] = [];
  let i = 0;
  let expect: Expect = "value";

  const fail = (offset: number, reason: string): JsonSyntaxError => ({
    offset,
    ...positionOf(text, offset),
    reason,
  });

  // Returns the offset after the closing quote, or an error.
  const scanString = (start: number): number | JsonSyntaxError => {
    let j = start + 1;
    for (;;) {
      const ch = text[j];
      if (ch === undefined) return fail(j, "unterminated string");
      if (ch === '"') return j + 1;
      if (ch.charCodeAt(0) < 0x20) return fail(j, "control character in string");
      if (ch === "\\") {
        const esc = text[j + 1];
        if (esc === "u") {
          if (!HEX4.test(text.slice(j + 2, j + 6))) return fail(j, "invalid \\u escape");
          j += 6;
          continue;
        }
        if (esc === undefined || !ESCAPES.has(esc)) return fail(j, "invalid escape");
        j += 2;
        continue;
      }
      j++;
    }
  };

  const afterValue = (): Expect => (stack.length === 0 ? "eof" : "comma_or_end");

  for (;;) {
    while (i < text.length && WS.has(text[i] ?? "")) i++;
    const ch = text[i];
    switch (expect) {
      case "eof":
        if (ch === undefined) return undefined;
        return fail(i, `trailing characters after the JSON value, found ${describeChar(ch)}`);
      case "colon":
        if (ch !== ":") return fail(i, `expected ':', found ${describeChar(ch)}`);
        i++;
        expect = "value";
        continue;
      case "key":
      case "key_or_end": {
        if (ch === "}" && expect === "key_or_end") {
          stack.pop();
          i++;
          expect = afterValue();
          continue;
        }
        if (ch !== '"') {
          const what = expect === "key" ? "a string key" : "a string key or '}'";
          return fail(i, `expected ${what}, found ${describeChar(ch)}`);
        }
        const end = scanString(i);
        if (typeof end !== "number") return end;
        i = end;
        expect = "colon";
        continue;
      }
      case "comma_or_end": {
        const top = stack[stack.length - 1];
        const close = top === "{" ? "}" : "]";
        if (ch === ",") {
          i++;
          expect = top === "{" ? "key" : "value";
          continue;
        }
        if (ch === close) {
          stack.pop();
          i++;
          expect = afterValue();
          continue;
        }
        return fail(i, `expected ',' or '${close}', found ${describeChar(ch)}`);
      }
      case "value":
      case "value_or_end": {
        if (ch === "]" && expect === "value_or_end") {
          stack.pop();
          i++;
          expect = afterValue();
          continue;
        }
        if (ch === undefined) return fail(i, "unexpected end of input, expected a value");
        if (ch === "{" || ch === "[") {
          stack.push(ch);
          i++;
          expect = ch === "{" ? "key_or_end" : "value_or_end";
          continue;
        }
        if (ch === '"') {
          const end = scanString(i);
          if (typeof end !== "number") return end;
          i = end;
          expect = afterValue();
          continue;
        }
        if (ch === "-" || (ch >= "0" && ch <= "9")) {
          NUMBER.lastIndex = i;
          const m = NUMBER.exec(text);
          if (m === null || m[0] === "-") return fail(i, "invalid number");
          i += m[0].length;
          expect = afterValue();
          continue;
        }
        const literal = ["true", "false", "null"].find((w) => text.startsWith(w, i));
        if (literal !== undefined) {
          i += literal.length;
          expect = afterValue();
          continue;
        }
        return fail(i, `expected a value, found ${describeChar(ch)}`);
      }
    }
  }
}
