#!/usr/bin/env node
// Check KQL queries with Microsoft's Kusto parser (@kusto/language-service-next).
//
// Reads one JSON document on stdin:
//   {"queries": [{"name": "...", "text": "...", "schema": {...}}],  (schema optional)
//    "schema": {"database": "db",                       (optional)
//               "tables": {"T": "(Col:type, ...)"},
//               "functions": [{"name": "F", "parameters": "(a:string)",
//                              "body": "{ datatable(X:string)[] }"}]},
//    "lint": false}                                      (optional: add analyzer hints)
// A query's own "schema" replaces the shared one for that query (for example a
// _GetWatchlist without columns, as the service has for a missing watchlist),
// and prints {"results": {"<name>": [{"severity", "code", "message", "start",
// "length", "excerpt"}]}} on stdout. Syntax and binding diagnostics always; the
// analyzer's lint diagnostics (for example KS508, join without a kind) when
// "lint" is true. Exit code 0 even when queries have errors: the caller judges.
"use strict";

const path = require("path");

const PACKAGE_DIR = path.join(
  __dirname,
  "..",
  "node_modules",
  "@kusto",
  "language-service-next",
);

function loadKusto() {
  // Not an ordinary module: bridge.min.js defines the global Bridge, then the
  // compiled Kusto.Language defines the global Kusto.
  require(path.join(PACKAGE_DIR, "bridge.min.js"));
  require(path.join(PACKAGE_DIR, "Kusto.Language.Bridge.min.js"));
  return global.Kusto;
}

function readStdin() {
  return require("fs").readFileSync(0, "utf8");
}

function buildGlobals(Kusto, schema) {
  const symbols = Kusto.Language.Symbols;
  const members = [];
  for (const [name, columns] of Object.entries(schema.tables || {})) {
    members.push(new symbols.TableSymbol.$ctor7(name, columns, ""));
  }
  for (const fn of schema.functions || []) {
    members.push(
      new symbols.FunctionSymbol.$ctor16(fn.name, fn.parameters, fn.body, ""),
    );
  }
  const database = new symbols.DatabaseSymbol.ctor(
    schema.database || "db",
    members,
  );
  return Kusto.Language.GlobalState.Default.WithDatabase(database);
}

// .NET lists expose Count/getItem; an empty result may be a plain JS array.
function toArray(list) {
  if (!list) return [];
  if (typeof list.Count === "number") {
    const items = [];
    for (let i = 0; i < list.Count; i += 1) items.push(list.getItem(i));
    return items;
  }
  return Array.from(list);
}

function describe(diagnostic, text) {
  const start = diagnostic.Start;
  const length = diagnostic.Length;
  return {
    severity: String(diagnostic.Severity),
    code: String(diagnostic.Code),
    message: String(diagnostic.Message),
    start,
    length,
    excerpt: text.substring(Math.max(0, start - 20), start + Math.max(length, 1) + 20),
  };
}

function check(Kusto, globals, text, lint) {
  const code = Kusto.Language.KustoCode.ParseAndAnalyze(text, globals);
  const diagnostics = toArray(code.GetDiagnostics());
  if (lint) {
    const service = new Kusto.Language.Editor.KustoCodeService.ctor(code);
    diagnostics.push(...toArray(service.GetAnalyzerDiagnostics(true)));
  }
  return diagnostics.map((d) => describe(d, text));
}

function main() {
  const request = JSON.parse(readStdin());
  const Kusto = loadKusto();
  const shared = buildGlobals(Kusto, request.schema || {});
  const results = {};
  for (const query of request.queries || []) {
    const globals = query.schema ? buildGlobals(Kusto, query.schema) : shared;
    results[query.name] = check(Kusto, globals, query.text, Boolean(request.lint));
  }
  process.stdout.write(JSON.stringify({ results }));
}

main();
