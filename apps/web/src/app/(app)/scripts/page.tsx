import type { Metadata } from 'next';
import { ScriptLibrary } from './script-library';

export const metadata: Metadata = { title: 'Script library' };

export default function ScriptsPage() {
  return <ScriptLibrary />;
}
