import { httpPlane } from '../../server/http/plane';
import { SignInForm } from './sign-in-form';

// What the page offers is the deployment's configuration (password on or off, the SSO provider), read per request.
export const dynamic = 'force-dynamic';

export default function SignInPage() {
  return <SignInForm options={httpPlane().signIn} />;
}
