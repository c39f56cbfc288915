/**
 * Log chunks on the wire: UTF-8 text when the bytes are valid UTF-8, else base64.
 */
import type { LogChunk } from './ports.js';

// ignoreBOM: a chunk's leading byte-order mark is part of its bytes, kept as U+FEFF
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export interface ChunkJson {
  seq: number;
  text?: string;
  base64?: string;
  late?: boolean;
}

export function chunkJson(c: LogChunk): ChunkJson {
  const out: ChunkJson = { seq: c.seq };
  try {
    out.text = utf8.decode(c.data);
  } catch {
    out.base64 = c.data.toString('base64');
  }
  if (c.late) out.late = true;
  return out;
}
