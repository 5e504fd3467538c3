/*
 * The `<% … %>` form that workbook inputs (src/engine/expressions.ts) and listener templates
 * (src/records/template.ts) share. What an expression may say differs between the two; where
 * one starts and ends does not.
 */

export const OPEN = '<%';
export const CLOSE = '%>';

/**
 * The literal runs and expressions of `text`, in order, each expression's source (between the
 * delimiters) parsed by `parse`. An `<%` at `open` without its `%>` throws `unterminated(open)`.
 */
export function splitExpressions<E>(text: string, parse: (source: string) => E, unterminated: (open: number) => Error): Array<string | E> {
  const pieces: Array<string | E> = [];
  let from = 0;
  while (from < text.length) {
    const open = text.indexOf(OPEN, from);
    if (open === -1) {
      pieces.push(text.slice(from));
      break;
    }
    if (open > from) pieces.push(text.slice(from, open));
    const close = text.indexOf(CLOSE, open + OPEN.length);
    if (close === -1) throw unterminated(open);
    pieces.push(parse(text.slice(open + OPEN.length, close)));
    from = close + CLOSE.length;
  }
  return pieces;
}
