/**
 * The tail of a terminal's output, addressed by byte offset, so a client
 * that reconnects with "the first byte I have not seen" gets exactly the
 * missing bytes (sshx-style resumable output), or learns that they fell out
 * of the buffer. Bounded: old chunks are dropped whole once over capacity.
 */
export class ReplayBuffer {
  private chunks: { offset: number; data: Buffer }[] = [];
  private size = 0;
  /** Total bytes ever appended = offset of the next byte. */
  private end = 0;

  constructor(readonly capacity = 1024 * 1024) {}

  get endOffset(): number {
    return this.end;
  }

  /** Offset of the oldest byte still held. */
  get startOffset(): number {
    return this.chunks[0]?.offset ?? this.end;
  }

  append(data: Buffer): void {
    if (data.length === 0) return;
    this.chunks.push({ offset: this.end, data });
    this.end += data.length;
    this.size += data.length;
    while (this.size > this.capacity && this.chunks.length > 1) {
      const old = this.chunks.shift() as { offset: number; data: Buffer };
      this.size -= old.data.length;
    }
  }

  /**
   * At most `max` bytes from `offset` (a view when they lie in one chunk),
   * or undefined if `offset` is no longer held (or in the future).
   */
  slice(offset: number, max: number): Buffer | undefined {
    if (offset > this.end || offset < this.startOffset) return undefined;
    const parts: Buffer[] = [];
    let n = 0;
    for (const c of this.chunks) {
      const cEnd = c.offset + c.data.length;
      if (cEnd <= offset) continue;
      const from = Math.max(0, offset - c.offset);
      const part = c.data.subarray(from, from + (max - n));
      parts.push(part);
      n += part.length;
      if (n >= max) break;
    }
    return parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts);
  }

  /** Bytes from `offset` to the end, or undefined if `offset` is no longer held (or in the future). */
  since(offset: number): Buffer | undefined {
    if (offset > this.end || offset < this.startOffset) return undefined;
    const parts: Buffer[] = [];
    for (const c of this.chunks) {
      const cEnd = c.offset + c.data.length;
      if (cEnd <= offset) continue;
      parts.push(c.offset >= offset ? c.data : c.data.subarray(offset - c.offset));
    }
    return Buffer.concat(parts);
  }
}
