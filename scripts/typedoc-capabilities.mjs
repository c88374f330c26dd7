// A TypeDoc plugin: files every top-level export of the API reference under its capability
// (Data, Model, Simulate, Plan, Sidecar, ...) by the folder of the source file that declares it,
// so the reference reads by what a user wants to do rather than as one list of ~100 names, and
// a new export lands in the right place without a tag. typedoc.json orders the categories and
// puts functions before types within each.
import { Comment, CommentTag, Converter, ReflectionKind } from 'typedoc';

/** Source folder (under src/) or file -> capability, first match wins. */
const CAPABILITIES = [
  [/\/src\/(data|io)\//, 'Data'],
  [/\/src\/(model|export)\//, 'Model'],
  [/\/src\/simulate\//, 'Simulate'],
  [/\/src\/(plan|report)\//, 'Plan'],
  [/\/src\/sidecar\//, 'Sidecar'],
  [/\/src\/random\//, 'Random'],
  [/\/src\//, 'Backend and errors'],
];

/** @param {import('typedoc').Application} app */
export function load(app) {
  app.converter.on(Converter.EVENT_RESOLVE_BEGIN, (context) => {
    for (const reflection of context.project.children ?? []) {
      if (reflection.kindOf(ReflectionKind.SomeModule)) continue;
      const file = reflection.sources?.[0]?.fullFileName ?? context.getSymbolFromReflection(reflection)?.declarations?.[0]?.getSourceFile().fileName;
      const found = file && CAPABILITIES.find(([pattern]) => pattern.test(file.replaceAll('\\', '/')));
      if (!found) continue;
      reflection.comment ??= new Comment();
      if (reflection.comment.blockTags.some((tag) => tag.tag === '@category')) continue;
      reflection.comment.blockTags.push(new CommentTag('@category', [{ kind: 'text', text: found[1] }]));
    }
  });
}
