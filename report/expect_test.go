package report

import (
	"strings"
	"testing"
)

func sampleRun() *Run {
	return &Run{SchemaVersion: SchemaVersion, Kernel: "6.1.0-test", Scenario: "touched", Blocks: 1000, BlockSize: 102400,
		Methods: map[string]string{"copies": "kprobe:copy_mc_to_kernel"},
		Processes: []Process{
			{Role: "parent", PageFaults: U64(13), Copies: U64(11), InRegion: &FaultClasses{}},
			{Role: "reader", PageFaults: U64(0), Copies: U64(0), InRegion: &FaultClasses{}},
			{Role: "writer", PageFaults: U64(1000), Copies: U64(1000), WPFaults: U64(1000),
				InRegion: &FaultClasses{WP: 1000}, Probes: map[string]uint64{"do_wp_page": 1000}},
		}}
}

func TestExpectationsHold(t *testing.T) {
	run := sampleRun()
	for _, s := range []string{
		"writer.copies == 1000", "reader.copies == 0", "writer.copies == blocks", "blocks == writer.in_region.wp",
		"parent.copies < 100", "parent.copies <= 11", "writer.page_faults > 999", "writer.page_faults >= 1000",
		"reader.copies != 1", "writer.probes.do_wp_page == 1000", "run.blocks == 1000", "lost_records == 0",
		"  writer.copies==1000  ", "writer.copies == 1e3",
	} {
		e, err := ParseExpectation(s)
		if err != nil {
			t.Errorf("%q: %v", s, err)
			continue
		}
		if err := e.Check(run); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
}

func TestExpectationFailsWithValue(t *testing.T) {
	run := sampleRun()
	for s, want := range map[string]string{
		"writer.copies == 999":             "expectation failed: writer.copies == 999 (writer.copies is 1000)",
		"reader.copies > 0":                "expectation failed: reader.copies > 0 (reader.copies is 0)",
		"writer.copies < blocks":           "expectation failed: writer.copies < blocks (writer.copies is 1000, blocks is 1000)",
		"writer2.copies == 1":              `no process with role "writer2" (roles: parent, reader, writer)`,
		"reader.wp_faults == 0":            "reader.wp_faults is not measured in this run (null)",
		"writer.pagemap.at_fork.pages > 0": "writer.pagemap.at_fork.pages is not in this run (it needs --proof pagemap)",
		"writer.probes.copy_page == 0":     `writer.probes: no field "copy_page"`,
		"writer.in_region == 0":            "writer.in_region is not a number",
	} {
		e, err := ParseExpectation(s)
		if err != nil {
			t.Errorf("%q: %v", s, err)
			continue
		}
		err = e.Check(run)
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: %v, want one line with %q", s, err, want)
		}
	}
	es := []Expectation{}
	for _, s := range []string{"writer.copies == 1", "reader.copies == 0", "parent.copies == 2"} {
		e, _ := ParseExpectation(s)
		es = append(es, e)
	}
	if failed := CheckAll(run, es); len(failed) != 2 {
		t.Errorf("CheckAll: %v, want 2 failures", failed)
	}
}

func TestMalformedExpectations(t *testing.T) {
	for _, s := range []string{
		"", "writer.copies", "writer.copies = 1000", "writer.copies === 1000", "writer.copies == ",
		"== 1000", "writer.copies == 1000 == 1", "1 == 1", "writer.copis == 1", "nosuchfield == 1",
		"writer. == 1", "writer..copies == 1", "wr!ter.copies == 1", "writer.copies == NaN", "writer.copies == Inf",
		"writer.copies =< 3",
	} {
		if e, err := ParseExpectation(s); err == nil {
			t.Errorf("%q parsed as %+v", s, e)
		}
	}
}
