/** Looks at a Maildir on disk the way an operator would: which message files exist where. */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';

export interface MaildirListing {
  readonly new: string[];
  readonly cur: string[];
  readonly tmp: string[];
}

async function names(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir)).filter((n) => !n.startsWith('.')).sort();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
}

export async function listMaildir(root: string): Promise<MaildirListing> {
  const [n, c, t] = await Promise.all([names(join(root, 'new')), names(join(root, 'cur')), names(join(root, 'tmp'))]);
  return { new: n, cur: c, tmp: t };
}

/** The UIDLs of the messages on disk (a file's base name, up to the first `,` or `:`). */
export async function uidsOnDisk(root: string): Promise<string[]> {
  const l = await listMaildir(root);
  return [...l.new, ...l.cur].map((n) => n.split(/[,:]/)[0] as string).sort();
}
