import { Transform, type TransformCallback } from 'node:stream';
import { DotStuffer } from '@postern/pop3-protocol';

/** Dot-stuffs a canonical message stream and appends the terminating `.` line. */
export class DotStuffTransform extends Transform {
  readonly #stuffer = new DotStuffer();
  /** Octets of message data seen (before stuffing). */
  octets = 0;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.octets += chunk.length;
    callback(null, this.#stuffer.push(chunk));
  }

  override _flush(callback: TransformCallback): void {
    callback(null, this.#stuffer.finish());
  }
}
