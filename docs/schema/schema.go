// Package schema holds the JSON Schemas (draft 2020-12) of cowtrace's JSON
// outputs, so that a program, or a test binary run away from the source
// tree, validates against the very files users read here.
package schema

import "embed"

// Files are the *.schema.json files of this directory, each with the $id
// https://github.com/cowtrace/cowtrace/docs/schema/FILE.
//
//go:embed *.schema.json
var Files embed.FS
