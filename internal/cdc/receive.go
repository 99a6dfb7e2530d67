package cdc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtrail/pgtrail"
	"github.com/pgtrail/pgtrail/internal/backoff"
	"github.com/pgtrail/pgtrail/internal/chain"
)

// receiver holds one replication session's state.
type receiver struct {
	*Stream
	repl      *pgconn.PgConn
	target    pglogrepl.LSN // with ExitWhenCaughtUp: stop once this is received and archived
	relations map[uint32]*pglogrepl.RelationMessage
	dec       *decoder

	inTx     bool
	txEvents []pgtrail.Event
	txBytes  int

	// WAL capture: tables in mode 'wal' by relation id, the open transaction's changes to them
	// and its latest context message, and committed transactions not chained yet. While any
	// wait, nothing at or after the first of them is acknowledged.
	walTables map[uint32]*walTable // derived from relations and confs; nil: not in mode wal
	// The WAL's witness of trigger capture (witness.go): tables in mode trigger (nil: not), the
	// open transaction's changes to them and its inserts into audit.pending, captured entries
	// not seen sealed by event_id, partitions' tables by name.
	trigTables  map[uint32]*walTable
	txWitnessed []witnessed
	txCaptured  []pendingRow
	outstanding map[string]*captured
	nextWitness time.Time
	// txSwitchAt: tables switched to mode wal in the open transaction, and how many of its
	// changes came before; confsGuessed: see loadConfs.
	txSwitchAt   map[uint32]int
	confsGuessed bool
	// roots maps the names of audited tables and their partitions to the table's relation id,
	// as the catalog has them (read at rootsAt, again when a name is unknown, at most every 5 s).
	roots   map[string]rootEntry
	rootsAt time.Time
	// readTo is the end of the WAL read; serverEnd the server's WAL end, as last told.
	readTo, serverEnd pglogrepl.LSN
	confs             tableConfs
	// confsFromWAL: confs changes as audit.audited_tables' changes arrive; confDirty: since
	// last persisted.
	confsFromWAL bool
	confDirty    bool
	ctxKey       []byte // authenticates context messages
	txXID        uint32
	txCommit     time.Time
	txContext    *sessionContext
	txChanges    []change
	unsealed     []walTx
	unsealedN    int

	batch        []pgtrail.Event
	batchBytes   int
	batchStart   time.Time   // arrival of the batch's first event
	batchCommits []time.Time // commit times of the batch's transactions
	batchLSN     pglogrepl.LSN

	// One batch at a time is uploaded by a goroutine while the loop goes on receiving the next:
	// a receiver that stopped reading during each upload would make the next batch's entries
	// wait behind it. Nothing of it is acknowledged before it is durable.
	uploads   chan *upload
	inflight  *upload       // the batch being uploaded, nil when none
	flightLSN pglogrepl.LSN // acknowledged once inflight is durable: its end, and empty transactions after it
	// tipSeq and tipHash end what has been handed to the uploader (or archived before).
	tipSeq  int64
	tipHash []byte

	acked pglogrepl.LSN // confirmed to PostgreSQL: everything before it is archived or irrelevant
	// slotRecorded: the confirmed position recorded in audit.stream_slots (slotTracked: the
	// schema has it), written before PostgreSQL is told (registerSlot).
	slotRecorded pglogrepl.LSN
	slotTracked  bool
	received     pglogrepl.LSN // highest WAL position the server reported having sent
	lastData     time.Time
	nextState    time.Time
	nextBeat     time.Time
	nextSlot     time.Time
	nextReply    time.Time
}

// upload is a batch handed to the uploader goroutine.
type upload struct {
	parts   [][]pgtrail.Event // contiguous, written in order (two when cut at cutAt)
	commits []time.Time       // commit times of its transactions
	// seal: transactions in mode wal the uploader chains (sealWAL) before it stores the batch,
	// their entries following those in parts[0] (chained already); nil when the loop chained
	// them. The loop goes on receiving meanwhile: chaining a batch into audit.events takes as
	// long as its upload, and a loop that waited for it made the next batch's entries wait
	// behind it (a second of lag at 5,000 events/s). prevSeq and prevHash end what precedes the
	// batch; added are the entries the uploader added to parts; sealed is closed once parts is
	// final.
	seal     []walTx
	prevSeq  int64
	prevHash []byte
	added    []pgtrail.Event
	sealed   chan struct{}
	// sealErr is the chaining's error, set before sealed is closed (err is the uploader's until
	// done: the loop reads this one in between).
	sealErr error
	// done is canceled by the uploader when it is through with the batch; err is set before.
	done   context.Context
	finish context.CancelFunc
	err    error
}

func (r *receiver) loop(ctx context.Context) error {
	now := time.Now()
	r.lastData, r.nextState, r.nextSlot = now, now.Add(r.cfg.StandbyInterval), now
	r.tipSeq, r.tipHash = r.lastSeq, r.lastHash

	// Uploads outlive ctx: on stop, shutdown waits for them within the shutdown timeout. When
	// the session ends otherwise, the one in flight is abandoned, as a crash would: the next
	// session resumes from what the archive holds.
	uctx, stopUploads := context.WithCancel(context.WithoutCancel(ctx))
	r.uploads = make(chan *upload)
	var wg sync.WaitGroup
	wg.Go(func() {
		for u := range r.uploads {
			if u.seal != nil {
				u.sealErr = r.sealUpload(uctx, u)
				close(u.sealed)
				if u.sealErr != nil {
					u.err = u.sealErr
					u.finish()
					continue
				}
			}
			for _, part := range u.parts {
				if u.err = r.store(uctx, part); u.err != nil {
					break
				}
			}
			u.finish()
		}
	})
	defer func() {
		close(r.uploads)
		stopUploads()
		wg.Wait()
	}()

	for {
		if ctx.Err() != nil {
			return r.shutdown()
		}
		if r.inflight != nil && r.inflight.done.Err() != nil {
			if err := r.complete(ctx); err != nil {
				return r.stopOr(ctx, err)
			}
		}
		done, err := r.tick(ctx)
		if err != nil || done {
			return r.stopOr(ctx, err)
		}
		rctx, cancel := context.WithDeadline(ctx, r.deadline())
		stop := func() bool { return false }
		if r.inflight != nil {
			// Wake up as soon as the upload is through, to acknowledge it and start the next.
			stop = context.AfterFunc(r.inflight.done, cancel)
		}
		msg, err := r.repl.ReceiveMessage(rctx)
		stop()
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return r.shutdown()
			}
			// A timeout, or the upload's end (a canceled read leaves the connection usable).
			if pgconn.Timeout(err) || errors.Is(err, context.Canceled) {
				continue
			}
			return fmt.Errorf("receive: %w", err)
		}
		switch msg := msg.(type) {
		case *pgproto3.CopyData:
			if err := r.handle(ctx, msg.Data); err != nil {
				return r.stopOr(ctx, err)
			}
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("replication: %w", pgconn.ErrorResponseToPgError(msg))
		}
	}
}

// stopOr returns err, or, when err comes from ctx being done (a flush waiting for the upload in
// flight, say), stops as a stop should: archiving and acknowledging what is complete.
func (r *receiver) stopOr(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil {
		return r.shutdown()
	}
	return err
}

// deadline is when the loop must wake up even without a message.
func (r *receiver) deadline() time.Time {
	d := r.nextState
	if r.pending() && r.inflight == nil {
		d = earliest(d, r.batchStart.Add(r.cfg.BatchAge))
	}
	if r.cfg.HeartbeatInterval > 0 {
		beat := r.lastData.Add(r.cfg.HeartbeatInterval)
		if beat.Before(r.nextBeat) {
			beat = r.nextBeat
		}
		d = earliest(d, beat)
	}
	now := time.Now()
	if r.cfg.ExitWhenCaughtUp {
		d = earliest(d, now.Add(200*time.Millisecond))
	}
	// A deadline already past would return before reading anything: always give the read a chance.
	if floor := now.Add(5 * time.Millisecond); d.Before(floor) {
		d = floor
	}
	return d
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// tick does the time-driven work: batch age, standby status, heartbeats, slot size, catch-up.
func (r *receiver) tick(ctx context.Context) (done bool, err error) {
	now := time.Now()
	// While a batch is uploading, an aged batch keeps growing until the upload is through.
	if r.pending() && now.Sub(r.batchStart) >= r.cfg.BatchAge && r.mayFlush() && r.inflight == nil {
		if err := r.flush(ctx); err != nil {
			return false, err
		}
	}
	r.updateLag(now)
	if r.cfg.ExitWhenCaughtUp && !r.inTx && !r.pending() && r.inflight == nil && r.received >= r.target {
		r.log.Info("caught up", "archived_through_seq", r.lastSeq, "lsn", r.acked)
		if err := r.sendStatus(ctx, false); err != nil {
			return false, err
		}
		return true, r.confirmed(ctx)
	}
	if !now.Before(r.nextState) {
		if err := r.sendStatus(ctx, false); err != nil {
			return false, err
		}
	}
	// While catching up, ask for a keepalive now and then, so that an idle stream learns the
	// server's WAL end. Not on every message: each request costs the server a reply.
	if r.cfg.ExitWhenCaughtUp && !now.Before(r.nextReply) {
		r.nextReply = now.Add(200 * time.Millisecond)
		if err := r.sendStatus(ctx, true); err != nil {
			return false, err
		}
	}
	if r.cfg.HeartbeatInterval > 0 && now.Sub(r.lastData) >= r.cfg.HeartbeatInterval && !now.Before(r.nextBeat) {
		r.nextBeat = now.Add(r.cfg.HeartbeatInterval)
		// Transactional, so it reaches the slot as a commit the daemon can acknowledge.
		// Committed synchronously: that flushes earlier asynchronous commits too, which logical
		// decoding cannot see before they are flushed.
		if _, err := r.pool.Exec(ctx, "SELECT set_config('synchronous_commit', 'on', true), pg_logical_emit_message(true, 'pgtrail', 'heartbeat')"); err != nil {
			r.m.Errors.WithLabelValues("heartbeat").Inc()
			r.log.Warn("heartbeat failed", "err", err)
		}
	}
	if r.witnessFrom != 0 && r.acked >= r.witnessFrom {
		// The WAL from before the publication of audit.pending existed is read: the next
		// session reads it again.
		r.witnessFrom = 0
		return false, errWitnessBack
	}
	if !now.Before(r.nextWitness) {
		r.nextWitness = now.Add(r.cfg.WitnessAge / 2)
		if err := r.checkOutstanding(ctx); err != nil {
			r.log.Warn("could not look for the captured entries not seen sealed", "err", err)
		}
	}
	if !now.Before(r.nextSlot) {
		r.nextSlot = now.Add(30 * time.Second)
		r.checkSlot(ctx)
		if err := r.checkCapture(ctx); err != nil {
			r.log.Warn("could not check the capture of tables in mode wal", "err", err)
		}
	}
	return false, nil
}

func (r *receiver) updateLag(now time.Time) {
	if r.received > r.acked {
		r.m.LagBytes.Set(float64(r.received - r.acked))
	} else {
		r.m.LagBytes.Set(0)
	}
	if r.inflight != nil && len(r.inflight.commits) > 0 {
		r.m.LagSeconds.Set(now.Sub(r.inflight.commits[0]).Seconds())
	} else if len(r.batchCommits) > 0 {
		r.m.LagSeconds.Set(now.Sub(r.batchCommits[0]).Seconds())
	} else {
		r.m.LagSeconds.Set(0)
	}
}

// checkSlot warns when the slot holds back more WAL than configured.
func (r *receiver) checkSlot(ctx context.Context) {
	var retained int64
	err := r.pool.QueryRow(ctx, `SELECT COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::bigint
	                               FROM pg_replication_slots WHERE slot_name = $1`, r.cfg.Slot).Scan(&retained)
	if err != nil {
		r.log.Warn("could not read the slot's retained WAL", "err", err)
		return
	}
	r.m.RetainedWAL.Set(float64(retained))
	if retained > r.cfg.WALWarnBytes {
		r.log.Warn("replication slot retains much WAL: the archive is falling behind", "retained_bytes", retained, "threshold", r.cfg.WALWarnBytes)
	}
}

func (r *receiver) handle(ctx context.Context, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	switch data[0] {
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		pkm, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err != nil {
			return fmt.Errorf("parse keepalive: %w", err)
		}
		r.received = max(r.received, pkm.ServerWALEnd)
		r.serverEnd = max(r.serverEnd, pkm.ServerWALEnd)
		if !r.inTx {
			r.readTo = max(r.readTo, pkm.ServerWALEnd) // a walsender sends keepalives mostly when it has sent all there is
		}
		// Nothing is pending: everything the server has sent is archived (or uploading) or was
		// not ours.
		if !r.inTx && !r.pending() {
			r.ackAfterUpload(pkm.ServerWALEnd)
		}
		if pkm.ReplyRequested {
			return r.sendStatus(ctx, false)
		}
	case pglogrepl.XLogDataByteID:
		xld, err := pglogrepl.ParseXLogData(data[1:])
		if err != nil {
			return fmt.Errorf("parse XLogData: %w", err)
		}
		r.lastData = time.Now()
		r.received = max(r.received, xld.WALStart+pglogrepl.LSN(len(xld.WALData)))
		r.readTo = max(r.readTo, xld.WALStart+pglogrepl.LSN(len(xld.WALData)))
		r.serverEnd = max(r.serverEnd, xld.ServerWALEnd)
		if skip, err := r.ownEntry(ctx, xld.WALData); skip || err != nil {
			return err
		}
		msg, err := pglogrepl.Parse(xld.WALData)
		if err != nil {
			// A message this stream cannot read (pglogrepl refuses a row of a table without
			// columns, say) must not stop the trail: it is recorded and skipped.
			r.m.Errors.WithLabelValues("decode").Inc()
			r.log.Error("CAPTURE GAP: a change in the WAL cannot be decoded; recorded and skipped", "lsn", xld.WALStart, "err", err)
			if r.cfg.Observer != nil {
				r.cfg.Observer.Tampering(ctx, "UNDECODABLE", "")
			}
			if _, err := r.pool.Exec(ctx, `SELECT audit.log_event('CAPTURE_GAP', 'wal', $1, 'FAILURE', jsonb_build_object('error', $2::text, 'seen_by', 'pgtrail stream'))`,
				xld.WALStart.String(), err.Error()); err != nil {
				r.log.Error("could not record the undecodable change", "err", err)
			}
			return nil
		}
		return r.logical(ctx, msg)
	}
	return nil
}

func (r *receiver) isEvents(relID uint32) (*pglogrepl.RelationMessage, bool) {
	rel, ok := r.relations[relID]
	return rel, ok && rel.Namespace == "audit" && rel.RelationName == "events"
}

func (r *receiver) logical(ctx context.Context, msg pglogrepl.Message) error {
	switch msg := msg.(type) {
	case *pglogrepl.RelationMessage:
		r.relations[msg.RelationID] = msg
		return r.relationChanged(ctx, msg)
	case *pglogrepl.BeginMessage:
		r.inTx, r.txEvents, r.txBytes = true, r.txEvents[:0], 0
		r.txXID, r.txCommit, r.txContext, r.txChanges = msg.Xid, msg.CommitTime, nil, nil
		r.txWitnessed, r.txCaptured = r.txWitnessed[:0], r.txCaptured[:0]
		clear(r.txSwitchAt)
	case *pglogrepl.LogicalDecodingMessage:
		if msg.Prefix == eventPrefix {
			if msg.Transactional {
				return r.transactionalEvent(ctx, msg)
			}
			return r.autonomous(ctx, msg)
		}
		if msg.Transactional && msg.Prefix == contextPrefix {
			if c := decodeContext(msg.Content, r.ctxKey, r.txXID); c != nil {
				r.txContext = c
			} else {
				r.log.Warn("ignored a context message that is not audit.emit_context's (forged or replayed)", "xid", r.txXID)
			}
		}
	case *pglogrepl.InsertMessage:
		t, err := r.table(ctx, msg.RelationID)
		if err != nil {
			return err
		}
		if t != nil {
			r.txChanges = append(r.txChanges, change{table: t, action: "CREATE", new: tupleTexts(msg.Tuple, nil), ctx: r.txContext})
			return nil
		}
		if ok, err := r.witness(ctx, msg.RelationID, "CREATE", msg.Tuple, nil); ok || err != nil {
			return err
		}
		if rel, ok := r.isPending(msg.RelationID); ok {
			return r.pendingInserted(ctx, rel, msg.Tuple)
		}
		if rel, ok := r.isConfig(msg.RelationID); ok {
			return r.configChanged(rel, msg.Tuple, nil)
		}
		rel, ok := r.isEvents(msg.RelationID)
		if !ok {
			return nil
		}
		// Entries this stream chained from the WAL come back here once more: they are in the
		// batch or archived already, and their seq says so without decoding the rest (once the
		// uploader says where its chaining ended).
		if err := r.awaitSealed(ctx); err != nil {
			return err
		}
		if seq, err := strconv.ParseInt(tupleSeq(rel, msg.Tuple), 10, 64); err == nil && seq <= r.pendingSeq() {
			r.sealedAgain(rel, msg.Tuple)
			return nil
		}
		e, size, err := r.dec.decode(rel, msg.Tuple)
		if err != nil {
			return &fatalError{fmt.Errorf("decode audit.events row: %w", err)}
		}
		r.txEvents = append(r.txEvents, e)
		r.txBytes += size
	case *pglogrepl.UpdateMessage:
		t, err := r.table(ctx, msg.RelationID)
		if err != nil {
			return err
		}
		if t != nil {
			old := tupleTexts(msg.OldTuple, nil)
			c := change{table: t, action: "UPDATE", old: old, new: tupleTexts(msg.NewTuple, old), ctx: r.txContext}
			if msg.OldTupleType != pglogrepl.UpdateMessageTupleTypeOld {
				// Only the key, or nothing when the key did not change: the before image is
				// what the new row says of the key.
				c.oldKey = true
				if c.old == nil {
					c.old = keyOnly(t, c.new)
				}
			}
			r.txChanges = append(r.txChanges, c)
			return nil
		}
		if ok, err := r.witness(ctx, msg.RelationID, "UPDATE", msg.NewTuple, msg.OldTuple); ok || err != nil {
			return err
		}
		if rel, ok := r.isConfig(msg.RelationID); ok {
			return r.configChanged(rel, msg.NewTuple, nil)
		}
		if _, ok := r.isEvents(msg.RelationID); ok {
			r.recordTampering(ctx, "UPDATE", tupleSeq(r.relations[msg.RelationID], msg.NewTuple))
		}
	case *pglogrepl.DeleteMessage:
		t, err := r.table(ctx, msg.RelationID)
		if err != nil {
			return err
		}
		if t != nil {
			r.txChanges = append(r.txChanges, change{table: t, action: "DELETE", old: tupleTexts(msg.OldTuple, nil),
				oldKey: msg.OldTupleType != pglogrepl.DeleteMessageTupleTypeOld, ctx: r.txContext})
			return nil
		}
		if ok, err := r.witness(ctx, msg.RelationID, "DELETE", nil, msg.OldTuple); ok || err != nil {
			return err
		}
		if rel, ok := r.isConfig(msg.RelationID); ok {
			return r.configChanged(rel, nil, msg.OldTuple)
		}
		if _, ok := r.isEvents(msg.RelationID); ok {
			r.recordTampering(ctx, "DELETE", tupleSeq(r.relations[msg.RelationID], msg.OldTuple))
		}
	case *pglogrepl.TruncateMessage:
		for _, id := range msg.RelationIDs {
			t, err := r.table(ctx, id)
			if err != nil {
				return err
			}
			if t != nil {
				r.txChanges = append(r.txChanges, change{table: t, action: "TRUNCATE", ctx: r.txContext})
			}
			if _, err := r.witness(ctx, id, "TRUNCATE", nil, nil); err != nil {
				return err
			}
			if _, ok := r.isEvents(id); ok {
				r.recordTampering(ctx, "TRUNCATE", "")
			}
		}
	case *pglogrepl.CommitMessage:
		return r.commit(ctx, msg)
	}
	return nil
}

// ownEntry reports whether data is the insert of an entry into audit.events that this stream
// has batched or archived already (its own entries come back through the slot, a row each with
// both images: decoding them whole was a tenth of the stream's CPU in mode wal), read from the
// bytes without decoding the row. Anything else, or when the witness needs the row
// (sealedAgain), is left to the full decoding.
func (r *receiver) ownEntry(ctx context.Context, data []byte) (bool, error) {
	if len(data) < 5 || data[0] != 'I' || len(r.outstanding) > 0 {
		return false, nil
	}
	rel, ok := r.isEvents(binary.BigEndian.Uint32(data[1:5]))
	if !ok || len(rel.Columns) == 0 || rel.Columns[0].Name != "seq" {
		return false, nil
	}
	seq, ok := firstColumnInt(data[5:])
	if !ok {
		return false, nil
	}
	if err := r.awaitSealed(ctx); err != nil {
		return false, err
	}
	return seq <= r.pendingSeq(), nil
}

// firstColumnInt reads the first column of a pgoutput tuple ('N', column count, then per column
// its kind, and for text its length and bytes) as an integer in text form.
func firstColumnInt(t []byte) (int64, bool) {
	if len(t) < 8 || t[0] != 'N' || binary.BigEndian.Uint16(t[1:3]) == 0 || t[3] != 't' {
		return 0, false
	}
	n := int(binary.BigEndian.Uint32(t[4:8]))
	if n <= 0 || n > 20 || len(t) < 8+n {
		return 0, false
	}
	v, err := strconv.ParseInt(string(t[8:8+n]), 10, 64)
	return v, err == nil
}

// tupleSeq returns the seq column's text of a tuple, if present.
func tupleSeq(rel *pglogrepl.RelationMessage, t *pglogrepl.TupleData) string {
	return tupleText(rel, t, "seq")
}

// tupleText returns the text of the column name of a tuple ("" when absent, null or an unchanged
// TOAST value).
func tupleText(rel *pglogrepl.RelationMessage, t *pglogrepl.TupleData, name string) string {
	if rel == nil || t == nil {
		return ""
	}
	for i, c := range rel.Columns {
		if c.Name == name && i < len(t.Columns) && t.Columns[i].DataType == pglogrepl.TupleDataTypeText {
			return string(t.Columns[i].Data)
		}
	}
	return ""
}

// pendingSeq is the last seq archived, uploading or waiting in the batch.
func (r *receiver) pendingSeq() int64 {
	if len(r.batch) > 0 {
		return r.batch[len(r.batch)-1].Seq
	}
	return r.tipSeq
}

// ackAfterUpload acknowledges lsn, which ends WAL with nothing for the batch, as soon as
// everything before it is durable: now, or when the upload in flight is.
func (r *receiver) ackAfterUpload(lsn pglogrepl.LSN) {
	if r.inflight != nil {
		r.flightLSN = max(r.flightLSN, lsn)
		return
	}
	r.acked = max(r.acked, lsn)
}

// pending reports whether anything received waits for the archive: entries in the batch, or
// changes in mode 'wal' not chained yet.
func (r *receiver) pending() bool {
	return len(r.batch) > 0 || len(r.unsealed) > 0
}

func (r *receiver) commit(ctx context.Context, msg *pglogrepl.CommitMessage) error {
	r.inTx = false
	if err := r.witnessCommitted(ctx, msg); err != nil {
		return err
	}
	events := r.txEvents
	r.log.Debug("commit", "events", len(events), "wal_changes", len(r.txChanges), "end_lsn", msg.TransactionEndLSN, "pending_seq", r.pendingSeq())
	if len(r.txChanges) > 0 {
		if !r.pending() {
			r.batchStart = time.Now()
		}
		r.unsealed = append(r.unsealed, walTx{xid: r.txXID, commit: r.txCommit, end: msg.TransactionEndLSN, changes: r.txChanges})
		r.unsealedN += len(r.txChanges)
		r.batchCommits = append(r.batchCommits, msg.CommitTime)
		r.txChanges = nil
	}
	if len(events) > 0 {
		if err := r.awaitSealed(ctx); err != nil {
			return err
		}
		if err := r.addEntries(ctx, events, r.txBytes); err != nil {
			return err
		}
		r.batchCommits = append(r.batchCommits, msg.CommitTime)
	}
	// Before anything of this transaction is acknowledged.
	if err := r.configCommitted(ctx); err != nil {
		return err
	}
	if !r.pending() {
		// Nothing of this transaction waits for the archive: it can be confirmed with what
		// precedes it.
		r.ackAfterUpload(msg.TransactionEndLSN)
		return nil
	}
	r.batchLSN = msg.TransactionEndLSN
	if r.mayFlush() && (len(r.batch)+r.unsealedN >= r.cfg.BatchEvents || r.batchBytes >= r.cfg.BatchBytes || r.cutAt > 0) {
		return r.flush(ctx)
	}
	return nil
}

// addEntries adds chained entries (from audit.events' WAL, or chained by sealWAL) to the batch,
// after what is batched or archived (extendChain). size is their row data.
func (r *receiver) addEntries(ctx context.Context, events []pgtrail.Event, size int) error {
	n := len(events)
	return extendChain(ctx, r.pool, r.pendingSeq(), events, func(e *pgtrail.Event, read bool) {
		if read {
			r.add(*e, 0)
		} else {
			r.add(*e, size/n)
		}
	})
}

// extendChain gives add the entries that continue the chain after tip, in seq order: events at
// or before tip are skipped (they come again after a reconnect or a backfill, or were chained
// meanwhile), and entries missing between tip and the first of events (sealed before the slot
// existed, or by the SQL sealer while this stream chained) are read from the table first (read
// is then true; the entry is reused between calls). The loop's batch and the uploader's both
// grow this way.
func extendChain(ctx context.Context, db chain.Reader, tip int64, events []pgtrail.Event, add func(e *pgtrail.Event, read bool)) error {
	for len(events) > 0 && events[0].Seq <= tip {
		events = events[1:]
	}
	if len(events) == 0 {
		return nil
	}
	if events[0].Seq > tip+1 {
		if err := chain.Read(ctx, db, tip+1, events[0].Seq-1, func(e *pgtrail.Event) error {
			add(e, true)
			return nil
		}); err != nil {
			return err
		}
	}
	for i := range events {
		add(&events[i], false)
	}
	return nil
}

// chainWAL chains the committed changes in mode 'wal' (sealWAL) and adds their entries to the
// batch. A batch the uploader is chaining is chained first: one chainer at a time (both read
// where the chain ends), and the tip must be known before entries are read back from the table
// (found by review: a configuration change chaining on the loop raced the uploader, lost a
// change and batched others twice).
func (r *receiver) chainWAL(ctx context.Context) error {
	if err := r.awaitSealed(ctx); err != nil {
		return err
	}
	if len(r.unsealed) == 0 {
		return nil
	}
	events, err := r.sealWAL(ctx, r.unsealed)
	if err != nil {
		return err
	}
	r.unsealed, r.unsealedN = nil, 0
	size := 0
	for i := range events {
		size += approxSize(&events[i])
	}
	return r.addEntries(ctx, events, size)
}

// keyOnly returns an image with only t's key columns of img, for an UPDATE whose old tuple was
// not sent.
func keyOnly(t *walTable, img []*string) []*string {
	out := make([]*string, len(img))
	for i, c := range t.rel.Columns {
		if c.Flags&1 != 0 && i < len(img) {
			out[i] = img[i]
		}
	}
	return out
}

// approxSize is an entry's row data in bytes, for the batch's byte limit.
func approxSize(e *pgtrail.Event) int {
	n := len(e.ActorID) + len(e.ResourceType) + 128
	for _, p := range []*string{e.BeforeState, e.AfterState, e.Details, e.ResourceID} {
		if p != nil {
			n += len(*p)
		}
	}
	return n
}

func (r *receiver) add(e pgtrail.Event, size int) {
	if len(r.batch) == 0 {
		r.batchStart = time.Now()
	}
	r.batch = append(r.batch, e)
	r.batchBytes += size
	if len(r.outstanding) > 0 {
		r.sealedSeen(&e)
	}
}

// mayFlush is false while a batch interrupted by a crash is being rebuilt and has not reached
// its end yet: it must be cut exactly where it was cut before.
func (r *receiver) mayFlush() bool {
	return r.cutAt == 0 || r.pendingSeq() >= r.cutAt
}

// flush hands the batch to the uploader (cut at cutAt first, when that falls inside it), after
// waiting for the upload in flight, if any. complete acknowledges it once it is durable.
func (r *receiver) flush(ctx context.Context) error {
	if r.inflight != nil {
		if err := r.await(ctx); err != nil {
			return err
		}
	}
	if len(r.unsealed) > 0 && r.cutAt == 0 {
		// The uploader chains them, then stores the batch.
		return r.handOff()
	}
	if err := r.chainWAL(ctx); err != nil {
		return err
	}
	if len(r.batch) == 0 {
		// Everything was chained before a crash and is archived already.
		r.ackAfterUpload(r.batchLSN)
		r.batchCommits, r.batchBytes = nil, 0
		return nil
	}
	batch := r.batch
	if len(r.batchCommits) > 0 {
		// Where the lag goes: waiting to arrive (decoding, a busy machine), then in the batch.
		now := time.Now()
		r.log.Debug("batch closed", "events", len(batch), "transactions", len(r.batchCommits),
			"oldest_commit_age", now.Sub(r.batchCommits[0]).Round(time.Millisecond), "batch_age", now.Sub(r.batchStart).Round(time.Millisecond))
	}
	parts := [][]pgtrail.Event{batch}
	if r.cutAt > 0 && r.cutAt < batch[len(batch)-1].Seq {
		k := int(r.cutAt - batch[0].Seq + 1)
		parts = [][]pgtrail.Event{batch[:k], batch[k:]}
	}
	r.checkChain(r.tipSeq, r.tipHash, batch)
	last := batch[len(batch)-1]
	r.tipSeq, r.tipHash = last.Seq, last.EntryHash
	if r.cutAt > 0 && r.cutAt <= r.tipSeq {
		r.cutAt = 0
	}
	u := &upload{parts: parts, commits: r.batchCommits}
	u.done, u.finish = context.WithCancel(context.Background())
	r.inflight, r.flightLSN = u, r.batchLSN
	r.uploads <- u
	// The batch's slices now belong to the upload.
	r.batch, r.batchBytes, r.batchCommits = nil, 0, nil
	return nil
}

// handOff hands the batch to the uploader with its transactions in mode wal still to chain
// (sealUpload); awaitSealed learns where the chain then ends.
func (r *receiver) handOff() error {
	if len(r.batchCommits) > 0 {
		now := time.Now()
		r.log.Debug("batch closed", "events", len(r.batch)+r.unsealedN, "transactions", len(r.batchCommits),
			"oldest_commit_age", now.Sub(r.batchCommits[0]).Round(time.Millisecond), "batch_age", now.Sub(r.batchStart).Round(time.Millisecond))
	}
	u := &upload{parts: [][]pgtrail.Event{r.batch}, commits: r.batchCommits, seal: r.unsealed,
		prevSeq: r.tipSeq, prevHash: r.tipHash, sealed: make(chan struct{})}
	u.done, u.finish = context.WithCancel(context.Background())
	r.inflight, r.flightLSN = u, r.batchLSN
	r.uploads <- u
	r.batch, r.batchBytes, r.batchCommits = nil, 0, nil
	r.unsealed, r.unsealedN = nil, 0
	return nil
}

// sealUpload runs on the uploader: it chains u's transactions in mode wal after the entries of
// u.parts[0] (as chainWAL and addEntries do on the loop), reading from the table the entries
// others chained in between, and leaves the whole batch in u.parts (none when everything was
// chained and archived before a crash).
func (r *receiver) sealUpload(ctx context.Context, u *upload) error {
	events, err := r.sealWAL(ctx, u.seal)
	if err != nil {
		return err
	}
	batch := u.parts[0]
	tip := u.prevSeq
	if len(batch) > 0 {
		tip = batch[len(batch)-1].Seq
	}
	n := len(batch)
	if err := extendChain(ctx, r.pool, tip, events, func(e *pgtrail.Event, _ bool) { batch = append(batch, *e) }); err != nil {
		return err
	}
	u.added = batch[n:]
	if len(batch) == 0 {
		u.parts = nil
		return nil
	}
	r.checkChain(u.prevSeq, u.prevHash, batch)
	u.parts = [][]pgtrail.Event{batch}
	return nil
}

// awaitSealed waits, when the upload in flight is still chaining its transactions, until it
// is through, and moves the tip past its entries: the loop needs it to tell the entries it
// reads back from audit.events' WAL from others'.
func (r *receiver) awaitSealed(ctx context.Context) error {
	u := r.inflight
	if u == nil || u.seal == nil {
		return nil
	}
	select {
	case <-u.sealed:
	case <-ctx.Done():
		return ctx.Err()
	}
	if u.sealErr != nil {
		return r.await(ctx) // completes it, which returns the error
	}
	u.seal = nil
	if len(u.parts) > 0 {
		last := u.parts[0][len(u.parts[0])-1]
		r.tipSeq, r.tipHash = last.Seq, last.EntryHash
	}
	if len(r.outstanding) > 0 {
		for i := range u.added {
			r.sealedSeen(&u.added[i])
		}
	}
	return nil
}

// await waits for the upload in flight and completes it, sending standby status meanwhile so
// that PostgreSQL keeps the connection while the archive is slow or down.
func (r *receiver) await(ctx context.Context) error {
	for {
		t := time.NewTimer(time.Until(r.nextState))
		select {
		case <-r.inflight.done.Done():
			t.Stop()
			return r.complete(ctx)
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
			if err := r.sendStatus(ctx, false); err != nil {
				return err
			}
		}
	}
}

// complete takes the finished upload in flight: it advances the archive position and
// acknowledges the batch and what followed it without entries.
func (r *receiver) complete(ctx context.Context) error {
	u := r.inflight
	if u.seal != nil && u.sealErr == nil {
		if err := r.awaitSealed(ctx); err != nil {
			return err
		}
	}
	r.inflight = nil
	if u.err != nil {
		return u.err
	}
	for _, part := range u.parts {
		r.advance(ctx, part)
	}
	now := time.Now()
	for _, c := range u.commits {
		r.m.CommitToDurable.Observe(now.Sub(c).Seconds())
	}
	r.acked = max(r.acked, r.flightLSN)
	r.m.AckedLSN.Set(float64(r.acked))
	return r.sendStatus(ctx, false)
}

func (r *receiver) sendStatus(ctx context.Context, reply bool) error {
	if err := r.recordConfirmed(ctx, r.acked); err != nil {
		return err
	}
	err := pglogrepl.SendStandbyStatusUpdate(ctx, r.repl, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: max(r.received, r.acked),
		WALFlushPosition: r.acked,
		WALApplyPosition: r.acked,
		ReplyRequested:   reply,
	})
	if err != nil {
		return fmt.Errorf("send standby status: %w", err)
	}
	r.nextState = time.Now().Add(r.cfg.StandbyInterval)
	return nil
}

// confirmed waits until PostgreSQL has taken r.acked as the slot's position. The walsender reads
// a standby status when it gets to it; a connection closed before then, with the walsender's
// data unread, is reset, and the walsender dies writing without reading it (found in CI: seal
// --once returned and the slot still held what it had chained). The status is sent again while
// waiting; the walsender reads it even while its own sends are blocked.
func (r *receiver) confirmed(ctx context.Context) error {
	if r.acked == 0 {
		return nil
	}
	deadline := time.Now().Add(r.cfg.ShutdownTimeout)
	for {
		var done bool
		err := r.pool.QueryRow(ctx, `SELECT COALESCE((SELECT confirmed_flush_lsn >= $2::pg_lsn FROM pg_replication_slots WHERE slot_name = $1), false)`,
			r.cfg.Slot, r.acked.String()).Scan(&done)
		if err != nil {
			return fmt.Errorf("read slot %s's confirmed position: %w", r.cfg.Slot, err)
		}
		if done {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("slot %s not confirmed at %s within %s", r.cfg.Slot, r.acked, r.cfg.ShutdownTimeout)
		}
		if !backoff.Sleep(ctx, 20*time.Millisecond) {
			return ctx.Err()
		}
		if err := r.sendStatus(ctx, false); err != nil {
			return err
		}
	}
}

// shutdown archives what is complete and acknowledges it, within the shutdown timeout.
func (r *receiver) shutdown() error {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.ShutdownTimeout)
	defer cancel()
	notArchived := func(err error) error {
		return &fatalError{fmt.Errorf("stop: entries after seq %d not archived within %s (they stay in the slot and are archived at the next start): %w",
			r.lastSeq, r.cfg.ShutdownTimeout, err)}
	}
	if r.inflight != nil {
		if err := r.await(ctx); err != nil {
			return notArchived(err)
		}
	}
	if r.pending() && !r.mayFlush() {
		r.log.Info("stopping before a batch interrupted by a crash was rebuilt; it stays in the slot", "through_seq", r.cutAt)
	} else if r.pending() {
		if err := r.flush(ctx); err != nil {
			return notArchived(err)
		}
		if r.inflight != nil {
			if err := r.await(ctx); err != nil {
				return notArchived(err)
			}
		}
	} else if err := r.sendStatus(ctx, false); err != nil {
		r.log.Warn("could not send the final status", "err", err)
	}
	if err := r.confirmed(ctx); err != nil {
		// Not lost: what follows the slot's position is read again at the next start.
		r.log.Warn("PostgreSQL did not take the final position: the next start reads from an earlier one", "err", err)
	}
	r.log.Info("stopped", "archived_through_seq", r.lastSeq, "acknowledged_lsn", r.acked)
	return nil
}
