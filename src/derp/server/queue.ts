/**
 * A fixed-depth FIFO of packets waiting for one destination (spec/derp.md §9.3): a ring buffer, so a full queue
 * never grows; the caller drops the head (queue_head) when it is full.
 */

export interface QueuedPacket {
  /** RecvPacket source key (the sender's key, or the original src of a ForwardPacket). */
  src: Uint8Array;
  /** keyId(src), for the "heard from" record (§9.4). */
  srcId: string;
  payload: Uint8Array;
}

export class PacketQueue {
  readonly depth: number;
  #ring: (QueuedPacket | undefined)[];
  #head = 0;
  #len = 0;
  #bytes = 0;

  constructor(depth: number) {
    this.depth = depth;
    this.#ring = new Array<QueuedPacket | undefined>(depth);
  }

  get length(): number {
    return this.#len;
  }

  /** Payload bytes queued (a sizing hint for the writer). */
  get bytes(): number {
    return this.#bytes;
  }

  /** Appends; false when full. */
  push(p: QueuedPacket): boolean {
    if (this.#len === this.depth) return false;
    this.#ring[(this.#head + this.#len) % this.depth] = p;
    this.#len++;
    this.#bytes += p.payload.length;
    return true;
  }

  /** Removes and returns the oldest packet. */
  shift(): QueuedPacket | undefined {
    if (this.#len === 0) return undefined;
    const p = this.#ring[this.#head]!;
    this.#ring[this.#head] = undefined;
    this.#head = (this.#head + 1) % this.depth;
    this.#len--;
    this.#bytes -= p.payload.length;
    return p;
  }

  /** The oldest packet without removing it. */
  peek(): QueuedPacket | undefined {
    return this.#len === 0 ? undefined : this.#ring[this.#head];
  }

  /** Empties the queue, returning what was in it (to count as dropped). */
  clear(): QueuedPacket[] {
    const out: QueuedPacket[] = [];
    for (let p = this.shift(); p !== undefined; p = this.shift()) out.push(p);
    return out;
  }
}
