package render

import (
	"encoding/csv"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/cowtrace/cowtrace/report"
)

// The CSV of a run is for spreadsheets and scripts that concatenate the
// runs of many machines: one header, the same for the experiment and traced
// runs on every kernel and in every mode, named after the JSON contract's
// keys with the unit in the name where there is one (lifetime_ms); plain
// numbers in the cells; an empty cell where the JSON says null (not
// measured, or not this kind of run). How each figure was measured is not
// in the CSV, which has no place for it that every reader skips: it is the
// JSON's methods and the table's footnotes.

// csvColumn is one column of the CSV: its name and its cell in a row.
type csvColumn struct {
	name string
	cell func(r *report.Run, p *report.Process) string
}

// csvColumns are the CSV's columns, in order.
var csvColumns = func() []csvColumn {
	cols := []csvColumn{
		{"kernel", func(r *report.Run, p *report.Process) string { return r.Kernel }},
		{"scenario", func(r *report.Run, p *report.Process) string { return r.Scenario }},
		{"label", func(r *report.Run, p *report.Process) string { return r.Label }},
		{"role", func(r *report.Run, p *report.Process) string { return p.Role }},
		{"pid", func(r *report.Run, p *report.Process) string { return strconv.Itoa(p.Pid) }},
		{"tid", lineage(func(l *report.Lineage) string { return optInt(l.Tid) })},
		{"ppid", lineage(func(l *report.Lineage) string { return strconv.Itoa(l.Ppid) })},
		{"depth", lineage(func(l *report.Lineage) string { return strconv.Itoa(l.Depth) })},
		{"comm", lineage(func(l *report.Lineage) string { return l.Comm })},
		{"start_ms", lineage(func(l *report.Lineage) string { return msText(l.StartMs) })},
		{"lifetime_ms", lineage(func(l *report.Lineage) string { return msText(l.LifetimeMs) })},
		{"exited", lineage(func(l *report.Lineage) string { return strconv.FormatBool(l.Exited) })},
		{"threads", lineage(func(l *report.Lineage) string { return strconv.Itoa(l.Threads) })},
	}
	for _, c := range report.Counts[:6] { // page_faults ... inferred_copies
		cols = append(cols, csvColumn{c.Key, func(r *report.Run, p *report.Process) string { return cell(c.Get(p)) }})
	}
	for _, where := range []string{"in_region", "outside"} {
		for _, c := range report.Classes {
			cols = append(cols, csvColumn{where + "_" + string(c), func(r *report.Run, p *report.Process) string {
				return cell(r.Class(p, where, c))
			}})
		}
	}
	return append(cols,
		csvColumn{"lost_records", func(r *report.Run, p *report.Process) string { return strconv.FormatUint(p.LostRecords, 10) }},
		// Which functions are probed varies with the kernel (its copy
		// routine) and --probe: one column of FUNC=HITS pairs keeps the
		// header fixed.
		csvColumn{"probes", func(r *report.Run, p *report.Process) string { return probePairs(p.Probes) }},
	)
}()

// CSVHeader is the header line of every run's CSV.
func CSVHeader() []string {
	h := make([]string, len(csvColumns))
	for i, c := range csvColumns {
		h[i] = c.name
	}
	return h
}

func writeCSV(w io.Writer, run *report.Run) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader()); err != nil {
		return err
	}
	rec := make([]string, len(csvColumns))
	for i := range run.Processes {
		for j, c := range csvColumns {
			rec[j] = c.cell(run, &run.Processes[i])
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// lineage is a cell of a traced run's rows, empty on the experiment's.
func lineage(get func(l *report.Lineage) string) func(r *report.Run, p *report.Process) string {
	return func(r *report.Run, p *report.Process) string {
		if p.Lineage == nil {
			return ""
		}
		return get(p.Lineage)
	}
}

// cell is a count, empty when it was not measured.
func cell(v *uint64) string {
	if v == nil {
		return ""
	}
	return strconv.FormatUint(*v, 10)
}

// optInt is an id that 0 leaves unset (a process row's tid).
func optInt(v int) string {
	if v == 0 {
		return ""
	}
	return strconv.Itoa(v)
}

// msText is milliseconds to the microsecond, the precision that matters
// for a process's lifetime and that a spreadsheet reads as a number.
func msText(ms float64) string { return strconv.FormatFloat(ms, 'f', 3, 64) }

// probePairs are kprobe hits as FUNC=HITS;..., by name.
func probePairs(probes map[string]uint64) string {
	names := make([]string, 0, len(probes))
	for fn := range probes {
		names = append(names, fn)
	}
	sort.Strings(names)
	for i, fn := range names {
		names[i] = fn + "=" + strconv.FormatUint(probes[fn], 10)
	}
	return strings.Join(names, ";")
}
