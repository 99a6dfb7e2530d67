package cdc

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the stream daemon's Prometheus metrics.
type Metrics struct {
	Events          prometheus.Counter
	Batches         prometheus.Counter
	BatchEvents     prometheus.Histogram
	UploadSeconds   prometheus.Histogram
	CommitToDurable prometheus.Histogram
	LagBytes        prometheus.Gauge
	LagSeconds      prometheus.Gauge
	RetainedWAL     prometheus.Gauge
	AckedLSN        prometheus.Gauge
	Errors          *prometheus.CounterVec
	Tampering       prometheus.Counter
	ChainBreaks     prometheus.Counter
}

// NewMetrics creates the metrics and registers them with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Events: prometheus.NewCounter(prometheus.CounterOpts{Name: "pgtrail_stream_events_total",
			Help: "Audit events archived."}),
		Batches: prometheus.NewCounter(prometheus.CounterOpts{Name: "pgtrail_stream_batches_total",
			Help: "Batches archived."}),
		BatchEvents: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "pgtrail_stream_batch_events",
			Help: "Events per archived batch.", Buckets: prometheus.ExponentialBuckets(1, 4, 10)}),
		UploadSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "pgtrail_stream_upload_seconds",
			Help: "Time to make one batch durable in the archive, retries included.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}),
		CommitToDurable: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "pgtrail_stream_commit_to_durable_seconds",
			Help: "Per transaction: from its commit (the sealer's) to its events being durable in the archive.", Buckets: prometheus.ExponentialBuckets(0.01, 2, 14)}),
		LagBytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "pgtrail_stream_lag_bytes",
			Help: "Server WAL end minus the last acknowledged LSN."}),
		LagSeconds: prometheus.NewGauge(prometheus.GaugeOpts{Name: "pgtrail_stream_lag_seconds",
			Help: "Age of the oldest commit received but not yet durable in the archive."}),
		RetainedWAL: prometheus.NewGauge(prometheus.GaugeOpts{Name: "pgtrail_stream_slot_retained_wal_bytes",
			Help: "WAL the replication slot keeps on the server."}),
		AckedLSN: prometheus.NewGauge(prometheus.GaugeOpts{Name: "pgtrail_stream_acknowledged_lsn",
			Help: "Last LSN acknowledged to PostgreSQL as flushed (as a number)."}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pgtrail_stream_errors_total",
			Help: "Errors by where they happened."}, []string{"where"}),
		Tampering: prometheus.NewCounter(prometheus.CounterOpts{Name: "pgtrail_stream_tampering_total",
			Help: "UPDATE, DELETE or TRUNCATE of audit.events seen in the WAL."}),
		ChainBreaks: prometheus.NewCounter(prometheus.CounterOpts{Name: "pgtrail_stream_chain_breaks_total",
			Help: "Streamed entries whose hash or link did not check out."}),
	}
	if reg != nil {
		reg.MustRegister(m.Events, m.Batches, m.BatchEvents, m.UploadSeconds, m.CommitToDurable, m.LagBytes,
			m.LagSeconds, m.RetainedWAL, m.AckedLSN, m.Errors, m.Tampering, m.ChainBreaks)
	}
	return m
}
