package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// printTable prints the figures as text tables, one a section.
func printTable(w io.Writer, res *Results) {
	m := res.Machine
	fmt.Fprintf(w, "\nnvmemfs benchmark harness: %s, %d cores, Linux %s, %s/%s, %s, root %v\n",
		m.CPU, m.Cores, m.Kernel, m.OS, m.Arch, m.Go, m.Root)
	fmt.Fprintf(w, "load average %s at the start, %s at the end; CPU pressure %s at the start, %s at the end; %.0f s\n",
		m.LoadAvg, m.LoadAvgEnd, m.CPUPressure, m.CPUPressureEnd, res.Seconds)
	fmt.Fprintf(w, "servers of the loops and removals run with GOMAXPROCS %d\n", res.ServerProcs)
	fmt.Fprintf(w, "medians of %d repetitions, [lowest highest]; ratios taken within each repetition, then the median\n", res.Reps)
	if res.Quick {
		fmt.Fprintln(w, "QUICK RUN: too few iterations for the figures to mean anything")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	span := func(s Summary, f string) string {
		return fmt.Sprintf(f+" ["+f+" "+f+"]", s.Median, s.Min, s.Max)
	}

	if s := res.SRCU; s != nil {
		fmt.Fprintln(w, "\nSRCU read section (the loops of nvcore's BenchmarkReadSection)")
		fmt.Fprintln(tw, "guard\tcpu\tns/op\tone reader's cost (ns)")
		for _, f := range s.Figures {
			fmt.Fprintf(tw, "  %s\t%d\t%s\t%.2f\n", f.Guard, f.CPU, span(f.NsOp, "%.2f"), f.PerReaderNs)
		}
		fmt.Fprintln(tw, "ratio\t\tmedian [range]\t")
		for _, r := range s.Ratios {
			fmt.Fprintf(tw, "  %s\t\t%s\t\n", r.Name, span(r.Ratio, "%.2f"))
		}
		tw.Flush()
	}
	if l := res.Loops; l != nil {
		fmt.Fprintf(w, "\nclient loops (sysfs: %s)\n", l.SysfsPath)
		fmt.Fprintln(tw, "loop\tbytes\tus/op\tMiB/s")
		for _, f := range l.Figures {
			ns := f.NsPerOp
			us := Summary{Median: ns.Median / 1e3, Min: ns.Min / 1e3, Max: ns.Max / 1e3}
			tp := ""
			if f.MiBPerSec != nil {
				tp = span(*f.MiBPerSec, "%.0f")
			}
			fmt.Fprintf(tw, "  %s\t%d\t%s\t%s\n", f.Name, f.Bytes, span(us, "%.2f"), tp)
		}
		fmt.Fprintln(tw, "ratio\t\tmedian [range]\t")
		for _, r := range l.Ratios {
			fmt.Fprintf(tw, "  %s (%s)\t\t%s\t\n", r.Name, r.Measure, span(r.Ratio, "%.2f"))
		}
		tw.Flush()
		p := l.Passthrough
		fmt.Fprintf(w, "FUSE passthrough: %s\n  (kernel offers it: %v; READs reaching the loopback: %d with it off, %d with it on)\n",
			p.Note, p.KernelOffers, p.ServerReadsOff, p.ServerReadsOn)
	}
	if r := res.Removal; r != nil {
		fmt.Fprintf(w, "\nremoval: %s\n", r.Note)
		fmt.Fprintln(tw, "provider\treaders\tp50 ms\tp99 ms\tmax ms\ttarget ms\tdrain p50/p99\tfs p50/p99\trun delay p50/p99/slowest\treads/trial\tchunks during (max)\tmet")
		for _, p := range r.Points {
			during := "-"
			if p.Provider != "file" {
				during = fmt.Sprintf("%.0f (%.0f)", p.ChunksDuring, p.ChunksDuringMax)
			}
			fmt.Fprintf(tw, "  %s\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f/%.2f\t%.2f/%.2f\t%.2f/%.2f/%.2f\t%.0f\t%s\t%v\n", p.Provider, p.Readers, p.P50ms, p.P99ms, p.MaxMs, p.TargetMs,
				p.DrainP50ms, p.DrainP99ms, p.NotifyP50ms, p.NotifyP99ms, p.RunDelayP50ms, p.RunDelayP99ms, p.SlowestRunDelayMs, p.ReadsPerTrial, during, p.Met)
		}
		tw.Flush()
	}
	if s := res.Scale; s != nil {
		fmt.Fprintf(w, "\nscale: %d devices x %d cells, %s\n", s.Devices, s.Cells, s.Binary)
		fmt.Fprintf(tw, "  ready (empty config)\t%.0f ms (%.0f ms)\t\n", s.ReadyMs, s.EmptyReadyMs)
		fmt.Fprintf(tw, "  attach\t%.0f ms\t\n", s.AttachMs)
		fmt.Fprintf(tw, "  list root, first / again\t%.2f ms / %s ms\t\n", s.ListRootColdMs, span(s.ListRootWarmMs, "%.2f"))
		fmt.Fprintf(tw, "  list cells/, first / again\t%.2f ms / %s ms\t\n", s.ListCellsColdMs, span(s.ListCellsWarmMs, "%.2f"))
		fmt.Fprintf(tw, "  server RSS: empty, attached, listed, peak\t%.1f, %.1f, %.1f, %.1f MiB\t\n", s.EmptyRSSMiB, s.RSSReadyMiB, s.RSSListedMiB, s.HWMMiB)
		tw.Flush()
	}
	fmt.Fprintln(w)
	fmt.Fprintln(tw, "target\twant\tmeasured\tmet")
	for _, t := range res.Targets {
		met := "no"
		switch {
		case !t.WasMeasured:
			met = "-"
		case t.Met:
			met = "yes"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", t.Name, t.Target, t.Measured, met)
	}
	tw.Flush()
	for k, e := range res.Errors {
		fmt.Fprintf(w, "ERROR %s: %s\n", k, strings.ReplaceAll(e, "\n", " "))
	}
}
