package testenv

import (
	"bytes"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/cowtrace/cowtrace/docs/schema"
)

// schemaBase is the $id prefix of the schemas in docs/schema: each names
// the others by file name, resolved against it.
const schemaBase = "https://github.com/cowtrace/cowtrace/docs/schema/"

// schemas are docs/schema/*.schema.json compiled, by file name less
// .schema.json: every schema is added to one compiler under its $id first,
// so that matrix.schema.json's reference to run.schema.json resolves
// offline, as a user's validator resolves it beside the files.
var schemas = sync.OnceValues(func() (map[string]*jsonschema.Schema, error) {
	files, err := fs.Glob(schema.Files, "*.schema.json")
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no schemas in docs/schema (%v)", err)
	}
	c := jsonschema.NewCompiler()
	for _, f := range files {
		b, err := fs.ReadFile(schema.Files, f)
		if err != nil {
			return nil, err
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		id, _ := doc.(map[string]any)["$id"].(string)
		if id != schemaBase+filepath.Base(f) {
			return nil, fmt.Errorf("%s: $id %q, want %q", f, id, schemaBase+filepath.Base(f))
		}
		if err := c.AddResource(id, doc); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
	}
	out := map[string]*jsonschema.Schema{}
	for _, f := range files {
		sch, err := c.Compile(schemaBase + filepath.Base(f))
		if err != nil {
			return nil, err
		}
		out[strings.TrimSuffix(filepath.Base(f), ".schema.json")] = sch
	}
	return out, nil
})

// ValidateJSON fails t unless data is one JSON document valid against
// docs/schema/NAME.schema.json (run, matrix, verdict, timeline, watch).
func ValidateJSON(t testing.TB, name string, data []byte) {
	t.Helper()
	if err := CheckJSON(name, data); err != nil {
		t.Error(err)
	}
}

// CheckJSON is ValidateJSON's check: nil when data is valid against
// docs/schema/NAME.schema.json, else what is wrong, where.
func CheckJSON(name string, data []byte) error {
	all, err := schemas()
	if err != nil {
		return fmt.Errorf("schemas: %w", err)
	}
	sch := all[name]
	if sch == nil {
		return fmt.Errorf("no docs/schema/%s.schema.json", name)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("%s: not one JSON document: %w", name, err)
	}
	if err := sch.Validate(doc); err != nil {
		return fmt.Errorf("not valid against %s.schema.json: %v", name, err)
	}
	return nil
}
