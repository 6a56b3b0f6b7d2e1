// A module-resolution hook for apollo4.test.js: `@apollo/client` and its
// subpaths resolve to Apollo Client 4, installed beside 3 as the npm alias
// `@apollo/client-4`, so the built link (dist/apollo.js imports
// `@apollo/client/core/index.js`) and the tests run on 4 in that process.
// Apollo 4's own `@apollo/client/…` imports land in the same package.
export async function resolve(specifier, context, nextResolve) {
  if (specifier === '@apollo/client' || specifier.startsWith('@apollo/client/')) {
    return nextResolve(`@apollo/client-4${specifier.slice('@apollo/client'.length)}`, context);
  }
  return nextResolve(specifier, context);
}
