import { randomBytes } from 'node:crypto';

let lastMillis = 0;
let sequence = 0;

/**
 * A unique id that sorts (as a string) in creation order within a process and roughly by time
 * across processes: 12 hex digits of milliseconds, 6 of a per-millisecond sequence, 10 random.
 * 28 printable characters, usable as a POP3 UIDL.
 */
export function timeOrderedId(): string {
  const now = Date.now();
  if (now > lastMillis) {
    lastMillis = now;
    sequence = 0;
  } else if (++sequence > 0xffffff) {
    lastMillis++;
    sequence = 0;
  }
  return (
    lastMillis.toString(16).padStart(12, '0') +
    sequence.toString(16).padStart(6, '0') +
    randomBytes(5).toString('hex')
  );
}

function isDigit(code: number): boolean {
  return code >= 48 && code <= 57;
}

/**
 * Compares strings with runs of digits compared as numbers, so `1700000000.M95P1` sorts before
 * `1700000000.M120P1`. Equal only for equal strings.
 */
export function naturalCompare(a: string, b: string): number {
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const ca = a.charCodeAt(i);
    const cb = b.charCodeAt(j);
    if (isDigit(ca) && isDigit(cb)) {
      let endA = i;
      while (endA < a.length && isDigit(a.charCodeAt(endA))) endA++;
      let endB = j;
      while (endB < b.length && isDigit(b.charCodeAt(endB))) endB++;
      let startA = i;
      while (startA < endA - 1 && a.charCodeAt(startA) === 48) startA++;
      let startB = j;
      while (startB < endB - 1 && b.charCodeAt(startB) === 48) startB++;
      const lengthA = endA - startA;
      const lengthB = endB - startB;
      if (lengthA !== lengthB) return lengthA - lengthB;
      for (let k = 0; k < lengthA; k++) {
        const d = a.charCodeAt(startA + k) - b.charCodeAt(startB + k);
        if (d !== 0) return d;
      }
      i = endA;
      j = endB;
      continue;
    }
    if (ca !== cb) return ca - cb;
    i++;
    j++;
  }
  if (i < a.length || j < b.length) return i < a.length ? 1 : -1;
  return a < b ? -1 : a > b ? 1 : 0;
}
