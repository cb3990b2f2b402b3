/* Socket I/O: persistent read events, pooled input buffers, and the message pump. */
#include "pgtide/io.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/event.h>

#include "pgtide/log.h"
#include "pgtide/pgtide.h"

/* Keep at most this many idle buffers (32 MiB); beyond that they go back to malloc. */
#define IOBUF_POOL_MAX_FREE 1024u
/* Out-queue memory above this is released once the queue empties. */
#define OUTQ_KEEP_CAP 4096u

/* ---- transport: plain sockets ---- */

static ssize_t plain_read(struct io *io, void *buf, size_t len)
{
	return recv(io->fd, buf, len, 0);
}

static ssize_t plain_writev(struct io *io, const struct iovec *iov, int n)
{
	if (n == 1)
		return send(io->fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL);
	struct msghdr mh = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n};
	return sendmsg(io->fd, &mh, MSG_NOSIGNAL);
}

static void plain_close(struct io *io)
{
	(void)io;
}

const struct io_transport io_transport_plain = {
        .read = plain_read,
        .writev = plain_writev,
        .close = plain_close,
};

/* ---- buffers ---- */

static struct iobuf *iobuf_get(struct iobuf_pool *p, uint32_t min_cap)
{
	struct iobuf *b;
	if (min_cap <= IO_BUF_SIZE && p->free) {
		b = p->free;
		p->free = b->next_free;
		p->n_free--;
	} else {
		uint32_t cap = min_cap > IO_BUF_SIZE ? min_cap : IO_BUF_SIZE;
		b = malloc(sizeof(*b) + cap);
		if (!b)
			return NULL;
		b->cap = cap;
		if (cap == IO_BUF_SIZE)
			p->n_total++;
	}
	b->next_free = NULL;
	b->start = b->end = 0;
	return b;
}

static void iobuf_put(struct iobuf_pool *p, struct iobuf *b)
{
	if (b->cap != IO_BUF_SIZE) {
		free(b);
		return;
	}
	if (p->n_free >= IOBUF_POOL_MAX_FREE) {
		p->n_total--;
		free(b);
		return;
	}
	b->next_free = p->free;
	p->free = b;
	p->n_free++;
}

void iobuf_pool_destroy(struct iobuf_pool *p)
{
	while (p->free) {
		struct iobuf *b = p->free;
		p->free = b->next_free;
		free(b);
	}
	p->n_free = 0;
	p->n_total = 0;
}

/* Returns the input buffer to the pool once everything in it is consumed. */
static void release_rbuf_if_empty(struct io *io)
{
	if (io->rbuf && io->rbuf->start == io->rbuf->end) {
		iobuf_put(&io->ctx->bufs, io->rbuf);
		io->rbuf = NULL;
	}
}

void io_consume(struct io *io, uint32_t n)
{
	io->rbuf->start += n;
	release_rbuf_if_empty(io);
}

/* ---- read interest ---- */

/*
 * Input a transport already holds (OpenSSL decrypts a whole record, and a read may take only
 * part of it) does not make the socket readable: run the read callback for it explicitly.
 */
static void kick_pending(struct io *io)
{
	if (io->reading && io->tp->pending && io->tp->pending(io) > 0)
		event_active(io->rev, EV_READ, 0);
}

static void update_read_interest(struct io *io)
{
	if (io->closed)
		return;
	bool full = io->rbuf && io->rbuf->start == 0 && io->rbuf->end == io->rbuf->cap;
	bool want = io->want_read && !io->bp_paused && !io->failed && !full;
	if (want == io->reading)
		return;
	if (want)
		event_add(io->rev, NULL);
	else
		event_del(io->rev);
	io->reading = want;
	kick_pending(io);
}

void io_set_want_read(struct io *io, bool want)
{
	io->want_read = want;
	update_read_interest(io);
}

void io_resume(struct io *io)
{
	if (io->closed || io->want_read)
		return;
	io_set_want_read(io, true);
	/* Bytes read before the pause will not make the socket readable again. */
	if (io_in_len(io) > 0)
		io->ops->on_readable(io->owner);
}

/* ---- writing ---- */

static void defer_failure(struct io *io, int err)
{
	if (io->failed)
		return;
	io->failed = true;
	io->fail_errno = err;
	struct pt_ctx *ctx = io->ctx;
	if (ctx->n_deferred_io == ctx->cap_deferred_io) {
		size_t cap = ctx->cap_deferred_io ? ctx->cap_deferred_io * 2 : 16;
		struct io **p = realloc(ctx->deferred_io, cap * sizeof(*p));
		if (!p) {
			log_error("out of memory deferring a write failure");
			return;
		}
		ctx->deferred_io = p;
		ctx->cap_deferred_io = cap;
	}
	ctx->deferred_io[ctx->n_deferred_io++] = io;
	pt_schedule_reaper(ctx);
	update_read_interest(io);
}

void io_run_deferred(struct pt_ctx *ctx)
{
	/* on_end may close objects and defer more failures: take the list first. */
	while (ctx->n_deferred_io > 0) {
		struct io *io = ctx->deferred_io[--ctx->n_deferred_io];
		if (!io->closed)
			io->ops->on_end(io->owner, IO_END_ERROR, io->fail_errno);
	}
}

static void on_write_event(evutil_socket_t fd, short what, void *arg);

/* The write event exists only once a write was refused: most connections never need one. */
static void arm_write(struct io *io)
{
	if (io->write_armed || io->closed)
		return;
	if (!io->wev) {
		io->wev = event_new(io->ctx->base, io->fd, EV_WRITE, on_write_event, io);
		if (!io->wev) {
			defer_failure(io, ENOMEM);
			return;
		}
	}
	event_add(io->wev, NULL);
	io->write_armed = true;
}

static void outq_trim(struct io *io)
{
	if (io->outq_off == io->outq.len) {
		io->outq_off = 0;
		if (io->outq.cap > OUTQ_KEEP_CAP)
			pbuf_free(&io->outq);
		else
			pbuf_reset(&io->outq);
	}
}

/*
 * Writes as much of the out-queue as the kernel takes. Returns false if the socket failed
 * (the failure is reported later through on_end).
 */
static bool flush_outq(struct io *io)
{
	while (io_outq_len(io) > 0) {
		struct iovec iov = {io->outq.data + io->outq_off, io_outq_len(io)};
		ssize_t n = io->tp->writev(io, &iov, 1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				arm_write(io);
				return true;
			}
			defer_failure(io, errno);
			return false;
		}
		io->outq_off += (size_t)n;
		io->bytes_out += (uint64_t)n;
	}
	outq_trim(io);
	return true;
}

/* Appends to the out-queue, and pauses the peer feeding us if the queue is too long. */
static void outq_append(struct io *io, const void *data, size_t len)
{
	if (io->outq_off > 0 && io->outq_off >= io->outq.len / 2) {
		/* Slide the unsent tail to the front so the queue does not grow forever. */
		size_t left = io_outq_len(io);
		memmove(io->outq.data, io->outq.data + io->outq_off, left);
		io->outq.len = left;
		io->outq_off = 0;
	}
	pbuf_put(&io->outq, data, len);
	if (io->outq.oom) {
		defer_failure(io, ENOMEM);
		return;
	}
	arm_write(io);
	if (io_outq_len(io) > IO_OUTQ_HIGH && io->peer && !io->peer->bp_paused) {
		io->peer->bp_paused = true;
		io->notify_drain = true;
		update_read_interest(io->peer);
	}
}

/* Sends bytes to io: directly if nothing is queued, the remainder into the out-queue. */
static void send_or_queue(struct io *io, const uint8_t *data, size_t len)
{
	/* Mid-handshake there is no channel for it (an error for a client that stalls there). */
	if (io->failed || io->closed || io->handshaking || len == 0)
		return;
	if (io_outq_len(io) == 0) {
		for (;;) {
			struct iovec iov = {(void *)data, len};
			ssize_t n = io->tp->writev(io, &iov, 1);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				if (errno != EAGAIN && errno != EWOULDBLOCK) {
					defer_failure(io, errno);
					return;
				}
				break;
			}
			io->bytes_out += (uint64_t)n;
			data += n;
			len -= (size_t)n;
			if (len == 0)
				return;
		}
	}
	outq_append(io, data, len);
}

/* Sends the bytes at the head of io's buffer that were decided FORWARD to its peer. */
static void flush_forward(struct io *io)
{
	if (io->fwd_pending == 0)
		return;
	uint32_t n = io->fwd_pending;
	io->fwd_pending = 0;
	if (io->peer)
		send_or_queue(io->peer, io->rbuf->data + io->rbuf->start, n);
	io->rbuf->start += n;
}

void io_flush_pending(struct io *io)
{
	if (io->rbuf)
		flush_forward(io);
}

void io_link(struct io *a, struct io *b)
{
	a->peer = b;
	b->peer = a;
}

void io_unlink(struct io *a, struct io *b)
{
	a->peer = NULL;
	b->peer = NULL;
	for (int i = 0; i < 2; i++) {
		struct io *io = i ? b : a;
		if (io->bp_paused) {
			io->bp_paused = false;
			if (!io->closed)
				update_read_interest(io);
		}
	}
}

void io_write(struct io *io, const void *data, size_t len)
{
	/* Anything already decided for this socket goes first. */
	if (io->peer && io->peer->fwd_pending)
		flush_forward(io->peer);
	send_or_queue(io, data, len);
}

static void drive_handshake(struct io *io);

static void on_write_event(evutil_socket_t fd, short what, void *arg)
{
	struct io *io = arg;
	(void)fd;
	(void)what;
	io->write_armed = false;
	if (io->handshaking) {
		drive_handshake(io);
		return;
	}
	if (!flush_outq(io))
		return;
	if (io_outq_len(io) == 0 && io->notify_drain) {
		io->notify_drain = false;
		if (io->peer && io->peer->bp_paused) {
			io->peer->bp_paused = false;
			update_read_interest(io->peer);
		}
		if (io->ops->on_drained)
			io->ops->on_drained(io->owner);
	}
}

/* ---- reading ---- */

/* Makes room at the end of the buffer: slides unconsumed bytes to the front when useful. */
static bool make_room(struct io *io)
{
	if (!io->rbuf) {
		io->rbuf = iobuf_get(&io->ctx->bufs, IO_BUF_SIZE);
		return io->rbuf != NULL;
	}
	struct iobuf *b = io->rbuf;
	if (b->end < b->cap)
		return true;
	if (b->start > 0) {
		memmove(b->data, b->data + b->start, b->end - b->start);
		b->end -= b->start;
		b->start = 0;
	}
	return b->end < b->cap;
}

/* One handshake step from a read or write event (or the activation io_set_transport made). */
static void drive_handshake(struct io *io)
{
	char err[256] = "";
	switch (io->tp->handshake(io, err, sizeof(err))) {
	case IO_HANDSHAKE_DONE:
		io->handshaking = false;
		if (io->ops->on_handshake)
			io->ops->on_handshake(io->owner, NULL);
		return;
	case IO_HANDSHAKE_WANT_READ:
		return; /* the persistent read event calls again */
	case IO_HANDSHAKE_WANT_WRITE:
		arm_write(io);
		return;
	case IO_HANDSHAKE_FAILED:
		io->want_read = false;
		update_read_interest(io);
		if (io->ops->on_handshake)
			io->ops->on_handshake(io->owner, err[0] ? err : "handshake failed");
		return;
	}
}

static void on_read_event(evutil_socket_t fd, short what, void *arg)
{
	struct io *io = arg;
	(void)fd;
	(void)what;
	if (io->closed || io->failed)
		return;
	if (io->handshaking) {
		drive_handshake(io);
		/* Done: what the peer sent behind its last handshake message is read below. */
		if (io->handshaking || io->closed || !io->want_read)
			return;
	}
	if (!make_room(io)) {
		update_read_interest(io);
		return;
	}
	struct iobuf *b = io->rbuf;
	ssize_t n;
	do {
		n = io->tp->read(io, b->data + b->end, b->cap - b->end);
	} while (n < 0 && errno == EINTR);
	if (n > 0) {
		b->end += (uint32_t)n;
		io->bytes_in += (uint64_t)n;
		pt_now_hold();
		io->ops->on_readable(io->owner);
		pt_now_release();
		if (!io->closed) {
			release_rbuf_if_empty(io);
			update_read_interest(io);
			kick_pending(io);
		}
		return;
	}
	release_rbuf_if_empty(io);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return;
	/* EOF or error: stop reading; the owner decides what happens next. */
	int err = n < 0 ? errno : 0;
	io->want_read = false;
	update_read_interest(io);
	io->ops->on_end(io->owner, n == 0 ? IO_END_EOF : IO_END_ERROR, err);
}

/* Grows the buffer so that a message of len bytes fits (for inspected messages > IO_BUF_SIZE). */
static bool ensure_capacity(struct io *io, uint32_t len)
{
	struct iobuf *b = io->rbuf;
	if (b->cap - b->start >= len)
		return true;
	if (b->cap >= len) {
		memmove(b->data, b->data + b->start, b->end - b->start);
		b->end -= b->start;
		b->start = 0;
		return true;
	}
	struct iobuf *nb = iobuf_get(&io->ctx->bufs, len);
	if (!nb)
		return false;
	nb->end = b->end - b->start;
	memcpy(nb->data, b->data + b->start, nb->end);
	iobuf_put(&io->ctx->bufs, b);
	io->rbuf = nb;
	return true;
}

static bool pump_once(struct io *io)
{
	struct iobuf *b = io->rbuf;
	if (!b)
		return true;

	/* The tail of a streamed message first. */
	if (io->stream_left > 0) {
		uint32_t n = b->end - b->start;
		if (n > io->stream_left)
			n = io->stream_left;
		io->stream_left -= n;
		if (io->stream_action == PUMP_FORWARD) {
			io->fwd_pending = n;
			flush_forward(io);
		} else {
			b->start += n;
		}
		if (io->stream_left > 0) {
			release_rbuf_if_empty(io);
			return true;
		}
	}

	for (;;) {
		uint32_t off = b->start + io->fwd_pending;
		uint32_t avail = b->end - off;
		char type;
		uint32_t len;
		enum proto_frame fr =
		        proto_frame_typed(b->data + off, avail, io->max_msg, &type, &len);
		if (fr == PROTO_FRAME_PARTIAL)
			break;
		if (fr == PROTO_FRAME_BAD_LEN) {
			flush_forward(io);
			io->ops->on_bad_frame(io->owner);
			return false;
		}
		if ((type | 0x20) == 'd' && io->pass_rows) {
			/* DataRow or CopyData, the bulk of a result or a COPY: nothing for the
			 * owner. */
			if (avail >= len) {
				io->fwd_pending += len;
				continue;
			}
			io->fwd_pending += avail;
			io->stream_left = len - avail;
			io->stream_action = PUMP_FORWARD;
			break;
		}
		bool whole = avail >= len;
		io->msg_avail = whole ? len : avail;
		enum pump_action act =
		        io->ops->on_message(io->owner, type, b->data + off, len, whole);
		if (act == PUMP_CLOSED)
			return false;
		b = io->rbuf; /* the handler may not replace it, but stay safe */
		if (act == PUMP_NEED_WHOLE) {
			if (whole) {
				log_error("pump: handler asked for a whole message it already had");
				act = PUMP_FORWARD;
			} else {
				flush_forward(io);
				if (!ensure_capacity(io, len)) {
					io->ops->on_bad_frame(io->owner);
					return false;
				}
				break;
			}
		}
		if (act == PUMP_HOLD) {
			flush_forward(io);
			return true;
		}
		uint32_t take = whole ? len : avail;
		if (act == PUMP_FORWARD) {
			io->fwd_pending += take;
		} else { /* PUMP_DROP */
			flush_forward(io);
			b->start += take;
		}
		if (!whole) {
			io->stream_left = len - take;
			io->stream_action = act;
			break;
		}
	}
	flush_forward(io);
	release_rbuf_if_empty(io);
	return true;
}

/*
 * A handler may cause another io_pump of the same connection (a server that finishes its sync
 * resumes its client, whose pump is already running further up the stack): the nested call
 * only asks for one more round, so one pump at a time walks a buffer.
 */
bool io_pump(struct io *io)
{
	if (io->pumping) {
		io->repump = true;
		return true;
	}
	io->pumping = true;
	bool ok;
	do {
		io->repump = false;
		ok = pump_once(io);
	} while (ok && io->repump && !io->closed);
	io->pumping = false;
	return ok;
}

/* ---- lifecycle ---- */

bool io_set_socket_buffers(int fd, int bytes)
{
	return setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes)) == 0 &&
	       setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes)) == 0;
}

bool io_init(struct io *io, struct pt_ctx *ctx, int fd, const struct io_ops *ops, void *owner)
{
	memset(io, 0, sizeof(*io));
	io->ctx = ctx;
	io->fd = fd;
	io->ops = ops;
	io->owner = owner;
	io->tp = &io_transport_plain;
	io->max_msg = (uint32_t)ctx->cfg.max_packet_size;
	io->rev = event_new(ctx->base, fd, EV_READ | EV_PERSIST, on_read_event, io);
	if (!io->rev) {
		io->closed = true;
		return false;
	}
	io->want_read = true;
	update_read_interest(io);
	return true;
}

bool io_set_transport(struct io *io, const struct io_transport *tp, void *tp_state, bool handshake)
{
	/* Bytes queued for the old transport would go out through the new one. */
	if (io_outq_len(io) > 0 || io->closed)
		return false;
	io->tp = tp;
	io->tp_state = tp_state;
	io->handshaking = handshake && tp->handshake;
	/* The first step runs at once: bytes already read may hold the peer's first message. */
	if (io->handshaking)
		event_active(io->rev, EV_READ, 0);
	else
		kick_pending(io);
	return true;
}

void io_close(struct io *io)
{
	if (io->closed)
		return;
	io->closed = true;
	if (io->rev)
		event_free(io->rev);
	if (io->wev)
		event_free(io->wev);
	io->rev = io->wev = NULL;
	io->reading = io->write_armed = false;
	if (io->tp)
		io->tp->close(io);
	if (io->rbuf) {
		iobuf_put(&io->ctx->bufs, io->rbuf);
		io->rbuf = NULL;
	}
	pbuf_free(&io->outq);
	io->outq_off = 0;
	if (io->peer && io->peer->peer == io)
		io->peer->peer = NULL;
	io->peer = NULL;
	/* A pending deferred failure must not call back into a closed io. */
	for (size_t i = 0; i < io->ctx->n_deferred_io; i++)
		if (io->ctx->deferred_io[i] == io)
			io->ctx->deferred_io[i] = io->ctx->deferred_io[--io->ctx->n_deferred_io];
}
