/**
 * `TwofoldLink` for Apollo Client 3.8+ and 4: put it in the link chain
 * before the terminating `HttpLink`:
 *
 *     new ApolloClient({ cache, link: ApolloLink.from([new TwofoldLink(tf), new HttpLink({ uri, fetch: tf.fetch })]) })
 *
 * - A mutation gets a `commandId` in its `input` when it has none.
 * - A mutation's result is held back until `writeVisible` says its write is
 *   visible (`tf.ensureVisible`: a stall is waited through and told to the
 *   client's `onStalled`), so `refetchQueries` (which run once the result
 *   is delivered) read data that holds the write; a write that is not
 *   visible in time, or will not be without an operator, is an error: the
 *   TwofoldError `tf.command` would reject with. Unsubscribing (a mutation
 *   Apollo no longer wants) ends the wait and its subscription.
 * - Every query carries the session's token as `extensions.consistentWith`
 *   (the link turns on `includeExtensions` for it), so queries sent to
 *   another instance wait there for the write too.
 *
 * Apollo Client 3 and 4 differ in where their entry points live and in
 * their Observable (zen-observable in 3, rxjs in 4). `@apollo/client/core`
 * exports `ApolloLink` and the version's own `Observable` in both (in 4 as
 * one of its legacy entry points), so one build serves both. The link reads
 * only what both versions' operations have (`query`, `variables`,
 * `operationName`, `extensions`, `setContext`), and is declared without
 * naming either version's types, so its declaration checks against whichever
 * is installed.
 */
import { ApolloLink, Observable } from '@apollo/client/core/index.js';
import type { DocumentNode } from 'graphql';
import { operationKind, prepareCommand, tokenOf, type TwofoldClient } from './index.js';

/** What the link uses of an Apollo operation: the same in Apollo Client 3 and 4. */
interface LinkOperation {
  query: DocumentNode;
  variables: Record<string, unknown>;
  operationName?: string | null;
  extensions: Record<string, unknown>;
  setContext(update: (previous: { http?: Record<string, unknown> }) => Record<string, unknown>): unknown;
}

interface LinkResult {
  data?: unknown;
  errors?: ReadonlyArray<unknown>;
}

interface LinkSubscription {
  unsubscribe(): void;
}

type Forward = (operation: LinkOperation) => {
  subscribe(observer: { next(result: LinkResult): void; error(error: unknown): void; complete(): void }): LinkSubscription;
};

function request(tf: TwofoldClient, operation: LinkOperation, forward: Forward): unknown {
  const kind = operationKind(operation.query, operation.operationName);
  if (kind === 'query') {
    const consistentWith = tf.sessionToken;
    if (consistentWith) {
      operation.extensions = { ...operation.extensions, consistentWith };
      operation.setContext((previous) => ({ http: { ...previous.http, includeExtensions: true } }));
    }
    return forward(operation);
  }
  if (kind !== 'mutation') return forward(operation);
  return new Observable<LinkResult>((observer) => {
    // Aborted when Apollo unsubscribes: nothing is sent or delivered after that.
    const controller = new AbortController();
    const live = () => !controller.signal.aborted;
    let upstream: LinkSubscription | undefined;
    prepareCommand(operation.query, operation.variables, operation.operationName ?? undefined).then(
      (prepared) => {
        if (!live()) return;
        operation.query = prepared.document;
        operation.variables = prepared.variables;
        // The complete waits for the result it follows, held until visible.
        let held: Promise<void> = Promise.resolve();
        upstream = forward(operation).subscribe({
          next: (result) => {
            const token = result.errors?.length ? null : tokenOf(result.data);
            if (!token) {
              observer.next(result);
              return;
            }
            tf.noteToken(token);
            held = tf.ensureVisible(token, { signal: controller.signal, data: result.data }).then(
              () => {
                if (live()) observer.next(result);
              },
              (error) => {
                if (live()) observer.error(error);
              },
            );
          },
          error: (error) => observer.error(error),
          complete: () => {
            void held.then(() => {
              if (live()) observer.complete();
            });
          },
        });
      },
      (error) => {
        if (live()) observer.error(error);
      },
    );
    return () => {
      controller.abort();
      upstream?.unsubscribe();
    };
  });
}

export class TwofoldLink extends ApolloLink {
  constructor(tf: TwofoldClient) {
    // The handler is typed by the link's own structural types, not by one
    // Apollo version's: the casts bridge to the version compiled against.
    super(((operation: unknown, forward: unknown) =>
      request(tf, operation as LinkOperation, forward as Forward)) as ConstructorParameters<typeof ApolloLink>[0]);
  }
}
