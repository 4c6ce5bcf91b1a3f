package main

// --format openmetrics of the experiment, run and attach: the encoder stands
// in a package of its own, which registers itself with report.Write, so that
// only this command links Prometheus's encoder and the net/http it brings.
import _ "github.com/cowtrace/cowtrace/report/openmetrics"
