/**
 * Reading a JSON document from a file, with errors that name the file (and, for syntax, the
 * position).
 *
 * @module
 */
import { closeSync, constants, fstatSync, openSync, readFileSync } from 'node:fs';
import { printParseErrorCode, visit, type ParseErrorCode } from 'jsonc-parser';
import { ErrorCodes, omnibalError } from '../errors';

/** What a JSON syntax error of jsonc-parser means, in words (never the file's content). */
const SYNTAX: Partial<Record<string, string>> = {
  InvalidSymbol: 'not JSON from here (an unexpected character)',
  InvalidNumberFormat: 'a malformed number',
  PropertyNameExpected: 'a property name in double quotes was expected',
  ValueExpected: 'a value was expected',
  ColonExpected: "a ':' was expected",
  CommaExpected: "a ',' was expected",
  CloseBraceExpected: "a '}' was expected",
  CloseBracketExpected: "a ']' was expected",
  EndOfFileExpected: 'the end of the document was expected (more follows the JSON value)',
  InvalidCommentToken: 'a comment (JSON has none)',
  UnexpectedEndOfComment: 'a comment (JSON has none)',
  UnexpectedEndOfString: 'a string is not closed',
  UnexpectedEndOfNumber: 'a number ends too early',
  InvalidUnicode: 'an invalid \\u escape',
  InvalidEscapeCharacter: 'an invalid escape in a string',
  InvalidCharacter: 'a control character inside a string',
};

/**
 * Where `text` stops being JSON and why, as `LINE:COLUMN: the WHAT does not parse: WHY` (1-based), located by
 * jsonc-parser's strict scanner (comments and trailing commas refused, as JSON.parse does):
 * a file error names its line and what was wrong, never quotes the content.
 */
function syntaxError(text: string, what: string): string {
  if (text.trim() === '') return `1:1: the ${what} does not parse: the file is empty`;
  let found: [ParseErrorCode, number, number] | undefined;
  visit(text, { onError: (error, _offset, _length, line, column) => (found ??= [error, line, column]) }, { disallowComments: true, allowTrailingComma: false });
  if (!found) return `1:1: the ${what} does not parse: not valid JSON`;
  const [code, line, column] = found;
  const name = printParseErrorCode(code);
  return `${line + 1}:${column + 1}: the ${what} does not parse: ${SYNTAX[name] ?? name}`;
}

/**
 * Reads and parses `file` (a leading byte-order mark ignored); `what` names it in errors (`ERR_OMNIBAL_PARSE`). Only a regular file:
 * a FIFO without a writer would block and a device such as `/dev/zero` never ends (opened
 * non-blocking, checked with `fstat`, as the sample readers do).
 */
export function readJsonFile(file: string, what: string): unknown {
  let text: string;
  let fd: number | undefined;
  try {
    fd = openSync(file, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
    const st = fstatSync(fd);
    if (!st.isFile()) {
      throw omnibalError(ErrorCodes.PARSE, `${file}: the ${what} is not a regular file (${st.isDirectory() ? 'a directory' : st.isFIFO() ? 'a FIFO' : 'a device or socket'})`);
    }
    text = readFileSync(fd, 'utf8');
  } catch (error) {
    if ((error as { code?: string }).code === ErrorCodes.PARSE) throw error;
    throw omnibalError(ErrorCodes.PARSE, `${file}: cannot read the ${what} (${(error as { code?: string }).code ?? String(error)})`, error);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  // A byte-order mark (editors on Windows write one) is not JSON; RFC 8259 lets a parser ignore it.
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  try {
    return JSON.parse(text);
  } catch (error) {
    throw omnibalError(ErrorCodes.PARSE, `${file}:${syntaxError(text, what)}`, error);
  }
}
