/**
 * Minimal, bounded XML scanning for UPnP (device descriptions and SOAP bodies): finds elements by local name
 * (ignoring namespace prefixes) and decodes the five predefined entities. Not a general XML parser: no DTDs, no
 * CDATA, no recursion; every loop is bounded by the input length, which callers cap first. Pure. Serves the
 * UPnP IGD exchanges of spec/nat-traversal.md §8.4 (UPnP Device Architecture 1.1 §2 description, §3.2 SOAP).
 */

/** Decodes &amp; &lt; &gt; &quot; &apos; and numeric character references. */
export function decodeXmlText(s: string): string {
  return s.replace(/&(amp|lt|gt|quot|apos|#\d{1,7}|#x[0-9a-fA-F]{1,6});/g, (_m, e: string) => {
    switch (e) {
      case 'amp': return '&';
      case 'lt': return '<';
      case 'gt': return '>';
      case 'quot': return '"';
      case 'apos': return "'";
      default: {
        const n = e.startsWith('#x') ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
        return n <= 0x10ffff ? String.fromCodePoint(n) : '';
      }
    }
  });
}

export function encodeXmlText(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Inner text of every `<[prefix:]name ...>…</[prefix:]name>` element (not nested in itself), in document order, at
 * most `max`. Linear: each open tag is matched once and its close tag searched forward once; a missing close tag
 * ends the scan.
 */
export function elements(xml: string, name: string, max: number): string[] {
  const open = new RegExp(`<(?:[A-Za-z_][\\w.-]*:)?${escapeRe(name)}(?:\\s[^<>]*)?>`, 'g');
  const close = new RegExp(`</(?:[A-Za-z_][\\w.-]*:)?${escapeRe(name)}\\s*>`, 'g');
  const out: string[] = [];
  while (out.length < max) {
    const o = open.exec(xml);
    if (o === null) break;
    close.lastIndex = open.lastIndex;
    const c = close.exec(xml);
    if (c === null) break;
    out.push(xml.slice(open.lastIndex, c.index));
    open.lastIndex = close.lastIndex;
  }
  return out;
}

/** Decoded, trimmed text of the first `name` element, or null. */
export function firstText(xml: string, name: string): string | null {
  const e = elements(xml, name, 1)[0];
  return e === undefined ? null : decodeXmlText(e.trim());
}

/** The leaf children `<Name>text</Name>` (or `<Name/>`) directly inside `xml`, as a name → decoded text map. */
export function leafChildren(xml: string, max: number): Map<string, string> {
  const out = new Map<string, string>();
  const re = /<(?:[A-Za-z_][\w.-]*:)?([A-Za-z_][\w.-]*)(?:\s[^<>]*?)?(?:\/>|>([^<]*)<\/(?:[A-Za-z_][\w.-]*:)?\1\s*>)/g;
  for (let m = re.exec(xml); m !== null && out.size < max; m = re.exec(xml)) {
    const name = m[1] ?? '';
    if (!out.has(name)) out.set(name, decodeXmlText((m[2] ?? '').trim()));
  }
  return out;
}
