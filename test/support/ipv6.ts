/** Whether this host has an IPv6 loopback (some CI containers run without IPv6): tests that need ::1 skip without. */
import dgram from 'node:dgram';

export async function canBindV6(): Promise<boolean> {
  const s = dgram.createSocket({ type: 'udp6', ipv6Only: true });
  try {
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.bind(0, '::1', resolve);
    });
    return true;
  } catch {
    return false;
  } finally {
    s.close();
  }
}
