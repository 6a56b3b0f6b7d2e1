// TwofoldLink on Apollo Client 3 (`@apollo/client`): see apollo-cases.js.
import { apolloSuite } from './apollo-cases.js';

apolloSuite(3);
