/**
 * About how many bytes of stored JSON one page of a list reads. A page of large records (events
 * of a megabyte, execution inputs, task results, workbook definitions) ends early, after the
 * record that reaches this, and its `next_cursor` goes on after that record: a thousand such
 * records in one page would hold the process for seconds and take a gigabyte.
 */
export const PAGE_BYTES = 4 * 1024 * 1024;

/**
 * The rows of a page read while the sizes of the rows before each add up to less than `bytes`
 * (the first row always). `cut`: a row that was found was left for the next page.
 */
export function takeWithinBytes<T>(rows: Iterable<T>, size: (row: T) => number, bytes = PAGE_BYTES): { rows: T[]; cut: boolean } {
  const taken: T[] = [];
  let total = 0;
  for (const row of rows) {
    if (total >= bytes) return { rows: taken, cut: true };
    taken.push(row);
    total += size(row);
  }
  return { rows: taken, cut: false };
}

/**
 * The same in SQL, around a page statement whose rows come in `order` (its columns, unqualified):
 * each row kept says how many the page found (`page_found`), so that a cut shows.
 */
export function withinBytesSql(page: string, size: string, order: string, bytes = PAGE_BYTES): string {
  return `SELECT * FROM (SELECT p.*, (count(*) OVER ())::int AS page_found,
      coalesce(sum(${size}) OVER (ORDER BY ${order} ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS page_before
    FROM (${page}) p) x WHERE page_before < ${bytes} ORDER BY ${order}`;
}

/** The columns withinBytesSql adds to a page's rows. */
export interface PageColumns {
  page_found: number;
  page_before: number;
}

/** The rows a withinBytesSql statement answered, without the columns it added; `cut` as for takeWithinBytes. */
export function pageOfSql<T>(found: ReadonlyArray<T & PageColumns>): { rows: T[]; cut: boolean } {
  const cut = found.length > 0 && found.length < found[0].page_found;
  return { rows: found.map(({ page_found: _found, page_before: _before, ...row }) => row as T), cut };
}
