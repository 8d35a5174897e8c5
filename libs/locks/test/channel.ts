import { EventEmitter } from 'node:events';
import type { IpcPeer } from '../src/index.js';

/** Two ends of an in-memory message channel, delivering asynchronously like IPC does. */
export function channelPair(): [IpcPeer, IpcPeer] {
  const a = new EventEmitter();
  const b = new EventEmitter();
  const end = (self: EventEmitter, other: EventEmitter): IpcPeer => ({
    send: (m: unknown) => setImmediate(() => other.emit('message', structuredClone(m))),
    on: (event, listener) => self.on(event, listener),
  });
  return [end(a, b), end(b, a)];
}
