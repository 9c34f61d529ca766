/**
 * A notification rule's URL (a Slack webhook URL is itself a credential; a webhook URL may carry a token) and its
 * HMAC secret are stored sealed: AES-256-GCM under a key derived (HKDF-SHA256) from a key file outside the
 * database (PYREACH_NOTIFY_KEY_FILE, created 0600 like the signing key), with the rule's id and the field as
 * associated data, so a database reader learns neither and a database writer cannot move one rule's secret to
 * another rule. Every replica needs the same file.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes, type KeyObject } from 'node:crypto';

export interface SecretBox {
  seal(plain: string, context: string): string;
  open(sealed: string, context: string): string;
}

const PREFIX = 'v1';

/** The box for an Ed25519 private key (the key file's PKCS#8 bytes are the HKDF input). */
export function secretBoxFrom(privateKey: KeyObject): SecretBox {
  const ikm = privateKey.export({ type: 'pkcs8', format: 'der' });
  const key = Buffer.from(hkdfSync('sha256', ikm, Buffer.alloc(0), 'pyreach/notification-secrets/v1', 32));
  return {
    seal(plain, context) {
      const iv = randomBytes(12);
      const c = createCipheriv('aes-256-gcm', key, iv);
      c.setAAD(Buffer.from(context, 'utf8'));
      const ct = Buffer.concat([c.update(plain, 'utf8'), c.final()]);
      return [PREFIX, iv, c.getAuthTag(), ct]
        .map((p) => (typeof p === 'string' ? p : p.toString('base64url')))
        .join(':');
    },
    open(sealed, context) {
      const [v, iv, tag, ct] = sealed.split(':');
      if (v !== PREFIX || !iv || !tag || ct === undefined)
        throw new Error('not a sealed notification secret');
      const d = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'));
      d.setAAD(Buffer.from(context, 'utf8'));
      d.setAuthTag(Buffer.from(tag, 'base64url'));
      return Buffer.concat([d.update(Buffer.from(ct, 'base64url')), d.final()]).toString('utf8');
    },
  };
}
