/**
 * The tail of a terminal's output, addressed by byte offset, so a client
 * that reconnects with "the first byte I have not seen" gets exactly the
 * missing bytes (sshx-style resumable output), or learns that they fell out
 * of the buffer. Bounded: old chunks are dropped whole once over capacity.
 */
export class ReplayBuffer {
  /**
   * Oldest first; `head` is the first one still held (a moving start, so
   * dropping one is O(1); the array is compacted now and then). Typed echoes
   * arrive a few bytes at a time: they are copied into blocks of `block`
   * bytes rather than kept as one chunk and one Buffer each, and a send
   * finds its chunk by binary search rather than walking from the oldest: a
   * terminal typed in for ten minutes holds a few thousand echoes.
   */
  private chunks: Chunk[] = [];
  private head = 0;
  private size = 0;
  /** Total bytes ever appended = offset of the next byte. */
  private end = 0;
  private readonly block: number;

  constructor(readonly capacity = 1024 * 1024) {
    // Small enough that dropping whole blocks keeps the capacity honest.
    this.block = Math.min(16 * 1024, Math.floor(capacity / 16));
  }

  get endOffset(): number {
    return this.end;
  }

  /** How many chunks are held (typed echoes share blocks). */
  get heldChunks(): number {
    return this.chunks.length - this.head;
  }

  /** Offset of the oldest byte still held. */
  get startOffset(): number {
    return this.chunks[this.head]?.offset ?? this.end;
  }

  append(data: Buffer): void {
    if (data.length === 0) return;
    const last = this.chunks[this.chunks.length - 1];
    if (data.length <= this.block / 4) {
      if (last?.owned && last.buf.length - last.len >= data.length) {
        // Past `len` only: views handed out earlier never change.
        data.copy(last.buf, last.len);
        last.len += data.length;
      } else {
        const buf = Buffer.allocUnsafe(this.block);
        data.copy(buf, 0);
        this.chunks.push({ offset: this.end, buf, len: data.length, owned: true });
      }
    } else {
      this.chunks.push({ offset: this.end, buf: data, len: data.length, owned: false });
    }
    this.end += data.length;
    this.size += data.length;
    while (this.size > this.capacity && this.chunks.length - this.head > 1) {
      const old = this.chunks[this.head] as Chunk;
      this.size -= old.len;
      old.buf = EMPTY; // freed now, not at the next compaction
      this.head++;
    }
    if (this.head > 64 && this.head * 2 > this.chunks.length) {
      this.chunks = this.chunks.slice(this.head);
      this.head = 0;
    }
  }

  /** Index of the held chunk that contains `offset` (binary search; offsets ascend). */
  private indexOf(offset: number): number {
    let lo = this.head;
    let hi = this.chunks.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if ((this.chunks[mid] as Chunk).offset <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /**
   * At most `max` bytes from `offset` (a view when they lie in one chunk),
   * or undefined if `offset` is no longer held (or in the future).
   */
  slice(offset: number, max: number): Buffer | undefined {
    if (offset > this.end || offset < this.startOffset) return undefined;
    const parts: Buffer[] = [];
    let n = 0;
    for (
      let i = offset === this.end ? this.chunks.length : this.indexOf(offset);
      i < this.chunks.length;
      i++
    ) {
      const c = this.chunks[i] as Chunk;
      const from = Math.max(0, offset - c.offset);
      const part = c.buf.subarray(from, Math.min(c.len, from + (max - n)));
      parts.push(part);
      n += part.length;
      if (n >= max) break;
    }
    return parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts);
  }

  /** Bytes from `offset` to the end, or undefined if `offset` is no longer held (or in the future). */
  since(offset: number): Buffer | undefined {
    return this.slice(offset, Infinity);
  }
}

const EMPTY = Buffer.alloc(0);

interface Chunk {
  offset: number;
  buf: Buffer;
  /** Bytes of `buf` in use (a block fills up over several appends). */
  len: number;
  /** `buf` is a block of ours (appends may fill it), not the caller's buffer. */
  owned: boolean;
}
