// TwofoldLink on Apollo Client 4: in this process `@apollo/client` resolves
// to the `@apollo/client-4` alias (apollo4-hooks.mjs), for the built link
// and the tests alike; the cases are apollo-cases.js's.
import { register } from 'node:module';

register('./apollo4-hooks.mjs', import.meta.url);
const { apolloSuite } = await import('./apollo-cases.js');

apolloSuite(4);
