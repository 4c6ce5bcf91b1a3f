package report

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
)

// The JSON contract, from schema version 2 on, writes every key of an object
// in every object of its kind, whatever the kind of run, kernel or mode: a
// consumer (jq, pandas, a schema) never has to tell a missing key from one
// that does not apply. What does not apply or was not measured is null:
//
//   - a nil pointer, map or slice, as encoding/json writes it;
//   - a field tagged `null:"empty"` holding its zero value (no label, no
//     copy routine, the tid of a process row);
//   - every key of a nil embedded struct pointer (the Lineage of the
//     experiment's rows);
//   - the keys a type's MarshalJSON names (the experiment's layout in a
//     traced run) and the fault classes the run's method cannot tell
//     (FaultClasses).
//
// Lists that are merely empty (no notes) are [], not null. Decoding needs
// nothing special: encoding/json leaves a field at its zero value for null.

// marshalObject writes the struct v as a JSON object with every key present,
// in field order, as described above; nullKey, when not nil, names further
// keys written as null.
func marshalObject(v any, nullKey func(key string) bool) ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	first := true
	var walk func(v reflect.Value, t reflect.Type, absent bool) error
	walk = func(v reflect.Value, t reflect.Type, absent bool) error {
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			if tag == "-" || !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(tag, ",")
			if f.Anonymous && name == "" {
				// Flattened, as encoding/json does; a nil pointer
				// leaves each of its keys null.
				ft, fv, nested := f.Type, reflect.Value{}, absent
				if !absent {
					fv = v.Field(i)
				}
				if ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
					if !nested && fv.IsNil() {
						nested = true
					} else if !nested {
						fv = fv.Elem()
					}
				}
				if err := walk(fv, ft, nested); err != nil {
					return err
				}
				continue
			}
			if name == "" {
				name = f.Name
			}
			val := []byte("null")
			if !absent && (nullKey == nil || !nullKey(name)) {
				fv := v.Field(i)
				if f.Tag.Get("null") != "empty" || !fv.IsZero() {
					var err error
					if val, err = marshalValue(fv.Interface()); err != nil {
						return err
					}
				}
			}
			if !first {
				b.WriteByte(',')
			}
			first = false
			key, _ := marshalValue(name)
			b.Write(key)
			b.WriteByte(':')
			b.Write(val)
		}
		return nil
	}
	rv := reflect.ValueOf(v)
	if err := walk(rv, rv.Type(), false); err != nil {
		return nil, err
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// marshalValue is json.Marshal without escaping <, > and &: the filters in
// the methods ("error_code == 3 && address < ...") are read by people, and
// whether the output escapes them is the encoder's choice (render's does
// not), which it cannot undo once a MarshalJSON has.
func marshalValue(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// experimentKeys are the run's keys that describe the experiment's layout:
// null in a traced run, where they mean nothing.
var experimentKeys = map[string]bool{"blocks": true, "block_size": true, "offset": true, "touched": true, "region": true}

// MarshalJSON writes the run in the JSON contract of SchemaVersion.
func (r Run) MarshalJSON() ([]byte, error) {
	r.SchemaVersion = SchemaVersion
	r.Unavailable = orEmpty(r.Unavailable)
	r.Notes = orEmpty(r.Notes)
	r.Incomplete = orEmpty(r.Incomplete)
	// Complete is what Incomplete says, also in a report of version 1
	// read back, written before the field.
	r.Complete = len(r.Incomplete) == 0
	in, out := r.unmeasuredClasses("in_region"), r.unmeasuredClasses("outside")
	procs := make([]Process, len(r.Processes))
	for i, p := range r.Processes {
		if p.InRegion != nil {
			c := *p.InRegion
			c.unmeasured = in
			p.InRegion = &c
		}
		if p.Outside != nil {
			c := *p.Outside
			c.unmeasured = out
			p.Outside = &c
		}
		if r.CopiesBy != "" && p.CopiesBy == nil {
			// Split, and nothing to split: none, not unmeasured.
			p.CopiesBy = []Share{}
		}
		procs[i] = p
	}
	r.Processes = procs
	traced := r.Trace != nil
	type plain Run // without this method
	return marshalObject(plain(r), func(key string) bool { return traced && experimentKeys[key] })
}

// MarshalJSON writes the row in the JSON contract: see Run.MarshalJSON.
func (p Process) MarshalJSON() ([]byte, error) {
	if p.Unmeasured == nil {
		p.Unmeasured = map[string]string{}
	}
	if p.Lineage != nil && len(p.Comms) == 0 {
		l := *p.Lineage
		l.Comms = []string{l.Comm}
		p.Lineage = &l
	}
	type plain Process
	return marshalObject(plain(p), nil)
}

// MarshalJSON writes the classes, null for those the run's method cannot
// tell apart (see Run.ClassMeasured).
func (f FaultClasses) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, c := range Classes {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"` + string(c) + `":`)
		if v := f.Get(c); v != nil {
			b.WriteString(uintText(*v))
		} else {
			b.WriteString("null")
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// MarshalJSON writes the matrix in the JSON contract of SchemaVersion.
func (m Matrix) MarshalJSON() ([]byte, error) {
	m.SchemaVersion = SchemaVersion
	m.Scenarios = orEmpty(m.Scenarios)
	type plain Matrix
	return marshalObject(plain(m), nil)
}

// MarshalJSON writes the entry in the JSON contract.
func (e MatrixEntry) MarshalJSON() ([]byte, error) {
	e.Expectations = orEmpty(e.Expectations)
	type plain MatrixEntry
	return marshalObject(plain(e), nil)
}

// MarshalJSON writes the result in the JSON contract.
func (x ExpectResult) MarshalJSON() ([]byte, error) {
	type plain ExpectResult
	return marshalObject(plain(x), nil)
}

// orEmpty is s, or an empty list for nil: a list with nothing in it is [],
// which a consumer iterates, where null would make it test first.
func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// MarshalJSON writes the trace in the JSON contract: command null for
// attach, attached_pid and exit_code null for run.
func (t Trace) MarshalJSON() ([]byte, error) {
	t.StillRunning = orEmpty(t.StillRunning)
	type plain Trace
	return marshalObject(plain(t), nil)
}
