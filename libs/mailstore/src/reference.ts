/**
 * Whole-buffer reference implementations of the message forms, written for clarity rather than
 * speed. Tests compare the streaming transforms and every backend against these.
 */
const CR = 0x0d;
const LF = 0x0a;

/** Canonical form: each LF not preceded by CR gets one; a non-empty message ends with CRLF. */
export function canonicalReference(input: Uint8Array): Buffer {
  const out: number[] = [];
  for (let i = 0; i < input.length; i++) {
    const byte = input[i] as number;
    if (byte === LF && (i === 0 || input[i - 1] !== CR)) out.push(CR);
    out.push(byte);
  }
  if (out.length > 0 && out[out.length - 1] !== LF) out.push(CR, LF);
  return Buffer.from(out);
}

/** Stored LF form of canonical bytes: CRLF -> LF unless the CR follows another CR. */
export function storedLfReference(canonical: Uint8Array): Buffer {
  const out: number[] = [];
  for (let i = 0; i < canonical.length; i++) {
    const byte = canonical[i] as number;
    const dropCr = byte === CR && canonical[i + 1] === LF && (i === 0 || canonical[i - 1] !== CR);
    if (!dropCr) out.push(byte);
  }
  return Buffer.from(out);
}

/** POP3 TOP over canonical bytes: the header lines, the blank line, then `bodyLines` lines. */
export function topReference(canonical: Uint8Array, bodyLines: number): Buffer {
  const lines: Buffer[] = [];
  let start = 0;
  for (let i = 0; i < canonical.length; i++) {
    if (canonical[i] === LF) {
      lines.push(Buffer.from(canonical.subarray(start, i + 1)));
      start = i + 1;
    }
  }
  if (start < canonical.length) lines.push(Buffer.from(canonical.subarray(start)));
  const out: Buffer[] = [];
  let inBody = false;
  let remaining = bodyLines;
  for (const line of lines) {
    if (inBody) {
      if (remaining === 0) break;
      remaining--;
      out.push(line);
      continue;
    }
    out.push(line);
    const text = line.toString('latin1');
    if (text === '\r\n' || text === '\n') inBody = true;
  }
  return Buffer.concat(out);
}
