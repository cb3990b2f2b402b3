/*
 * Socket I/O for client and server connections: one persistent read event per socket, pooled
 * fixed-size input buffers, and a message pump that forwards whole protocol messages from one
 * connection's input buffer straight to its peer's socket.
 *
 * Why not bufferevents or evbuffer_read: libevent 2.1's evbuffer_read issues ioctl(FIONREAD)
 * before every read, and each chain moved between evbuffers is a malloc/free per message.
 * Here a connection holds an input buffer only while it has unconsumed bytes (taken from and
 * returned to a free list), forwarded bytes go from that buffer to the peer with one send(),
 * and only what the kernel refuses is copied to the peer's out-queue (then the source stops
 * reading until the peer drains: backpressure).
 */
#ifndef PGTIDE_IO_H
#define PGTIDE_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "pgtide/proto.h"

struct event_base;
struct event;
struct pt_ctx;
struct io;

/* Size of a pooled input buffer. Messages up to this size are inspected in place. */
#define IO_BUF_SIZE 32768u
/* Out-queue level above which the peer feeding it stops reading (backpressure). */
#define IO_OUTQ_HIGH (256u * 1024u)

/* An input buffer: bytes [start, end) are unconsumed. Larger ones exist for big messages. */
struct iobuf {
	struct iobuf *next_free; /* free-list link while unused */
	uint32_t cap;            /* bytes in data[] */
	uint32_t start;          /* first unconsumed byte */
	uint32_t end;            /* one past the last byte read */
	uint8_t data[];
};

/* What the message handler decides for one message. */
enum pump_action {
	PUMP_FORWARD = 0, /* send it to the peer (streamed if larger than what is buffered) */
	PUMP_DROP,        /* consume it without forwarding (pgtide's own traffic, hidden replies) */
	PUMP_NEED_WHOLE,  /* call again once the whole message is buffered */
	PUMP_HOLD,        /* stop pumping and leave it buffered (e.g. waiting for a server) */
	PUMP_CLOSED,      /* the handler closed this connection; touch nothing more */
};

/* One step of a transport's handshake (TLS). */
enum io_handshake {
	IO_HANDSHAKE_DONE = 0,   /* finished: application data may flow */
	IO_HANDSHAKE_WANT_READ,  /* call again when the socket is readable */
	IO_HANDSHAKE_WANT_WRITE, /* call again when the socket is writable */
	IO_HANDSHAKE_FAILED,     /* failed; the reason is in the caller's buffer */
};

/* Why a connection's I/O ended. */
enum io_end {
	IO_END_EOF = 0, /* the peer closed its side */
	IO_END_ERROR,   /* a socket error (reset, broken pipe, ...) */
};

/*
 * Callbacks of the object that owns an io (a client or a server). Contracts:
 * - on_handshake: a handshake started with io_set_transport(..., true) ended; error is NULL on
 *   success, else why it failed (input is no longer read; the owner closes). May be NULL for
 *   owners that never start one.
 * - on_readable: new bytes are in io->rbuf. Called from the read event; the owner usually calls
 *   io_pump. The owner may close itself inside (deferred free keeps memory valid).
 * - on_message: called by io_pump for each message at the head of the buffer. msg points at the
 *   type byte and is complete when `whole` (len = total length, header included); otherwise only
 *   the 5-byte header is guaranteed. Returns what to do with it.
 * - on_bad_frame: a length field outside 4..max was read; the owner closes with 08P01.
 * - on_end: the socket reached EOF or failed (on read, or a deferred write failure).
 * - on_drained: the out-queue was fully written after having been over IO_OUTQ_HIGH, or after
 *   a write had been refused; the peer may resume reading.
 */
struct io_ops {
	void (*on_handshake)(void *owner, const char *error);
	void (*on_readable)(void *owner);
	enum pump_action (*on_message)(void *owner, char type, const uint8_t *msg, uint32_t len,
	                               bool whole);
	void (*on_bad_frame)(void *owner);
	void (*on_end)(void *owner, enum io_end why, int err);
	void (*on_drained)(void *owner);
};

/*
 * Plain and TLS sockets behind one interface (tls.c has the TLS ones). io.c drives every one the
 * same way; the only difference it knows of is that a transport may hold input the read event
 * cannot see (bytes OpenSSL already decrypted), and may need a handshake first.
 */
struct io_transport {
	/* Like recv(): >0 bytes, 0 at EOF, -1 with errno (EAGAIN when nothing is there). */
	ssize_t (*read)(struct io *io, void *buf, size_t len);
	/* Like writev(): bytes written (possibly fewer), or -1 with errno (EAGAIN: try later). */
	ssize_t (*writev)(struct io *io, const struct iovec *iov, int n);
	/* Releases the transport's state; the fd is closed by whoever owns it. */
	void (*close)(struct io *io);
	/* Input already taken off the socket but not yet returned by read; NULL: never any. */
	size_t (*pending)(struct io *io);
	/* One step of the handshake (NULL: none); on FAILED writes why into err. */
	enum io_handshake (*handshake)(struct io *io, char *err, size_t n);
};

extern const struct io_transport io_transport_plain;

struct io {
	struct pt_ctx *ctx;
	int fd;
	struct event *rev; /* persistent read event */
	struct event *wev; /* write event, armed only while the kernel refuses bytes */
	const struct io_transport *tp;
	void *tp_state;
	const struct io_ops *ops;
	void *owner;

	struct iobuf *rbuf;   /* input, NULL while empty */
	uint32_t max_msg;     /* largest acceptable message length field */
	uint32_t stream_left; /* bytes of a message being streamed that are still to come */
	enum pump_action stream_action; /* FORWARD or DROP for those bytes */
	uint32_t fwd_pending;           /* bytes at rbuf->start decided FORWARD, not yet sent */
	uint32_t msg_avail; /* during on_message: bytes of the message buffered (len if whole) */

	struct pbuf outq; /* bytes for this socket that could not be sent yet */
	size_t outq_off;  /* first unsent byte in outq */
	struct io *peer;  /* where FORWARD sends to, or NULL */

	bool reading;      /* read event added */
	bool want_read;    /* the owner wants input (false: paused by the owner) */
	bool bp_paused;    /* paused because the peer's out-queue is over IO_OUTQ_HIGH */
	bool write_armed;  /* write event added */
	bool notify_drain; /* call on_drained when the out-queue empties */
	bool failed;       /* a write failed; on_end is pending */
	bool closed;       /* io_close was called */
	bool pumping;      /* inside io_pump (a nested call only asks for another round) */
	bool repump;       /* a nested io_pump was asked for */
	bool handshaking;  /* the transport's handshake runs: no application data either way */
	bool pass_rows;    /* DataRow and CopyData are forwarded without asking on_message */
	int fail_errno;

	uint64_t bytes_in; /* totals, for stats */
	uint64_t bytes_out;
};

/*
 * tcp_socket_buffer: the kernel's send and receive buffers of a socket, in bytes (Linux
 * doubles the value for its bookkeeping and caps it at net.core.wmem_max / rmem_max). A fixed
 * size also turns the kernel's autotuning off. False (errno set) if either is refused.
 */
bool io_set_socket_buffers(int fd, int bytes);

/* Sets up io on a connected non-blocking fd and starts reading. Returns false on failure. */
bool io_init(struct io *io, struct pt_ctx *ctx, int fd, const struct io_ops *ops, void *owner);

/*
 * Puts io on another transport (TLS) whose state is tp_state. With handshake, the handshake
 * runs from io's events from the next loop turn on and ends in ops->on_handshake; bytes
 * pgtide writes meanwhile are dropped. Returns false if bytes are still queued for the old
 * transport (nothing changed then).
 */
bool io_set_transport(struct io *io, const struct io_transport *tp, void *tp_state, bool handshake);

/* True once io speaks through a transport other than plain TCP (TLS). */
static inline bool io_uses_tls(const struct io *io)
{
	return io->tp != &io_transport_plain;
}

/* Stops the events, returns the buffers. Does not close the fd. Safe to call twice. */
void io_close(struct io *io);

/* Starts/stops reading by the owner's choice (independent of backpressure). */
void io_set_want_read(struct io *io, bool want);

/* Reading again after io_set_want_read(false): buffered input goes to on_readable at once. */
void io_resume(struct io *io);

/*
 * Runs on_message over the buffered messages and carries out the actions; forwarded bytes are
 * sent to io->peer (which must be set if any handler returns PUMP_FORWARD). Returns false if a
 * handler returned PUMP_CLOSED.
 */
bool io_pump(struct io *io);

/*
 * Queues bytes pgtide produced itself for this socket, after anything already queued or being
 * forwarded to it, and tries to send them at once.
 */
void io_write(struct io *io, const void *data, size_t len);

/* Sends the bytes already decided FORWARD (before unlinking the peer). */
void io_flush_pending(struct io *io);

/* Makes a and b each other's peer (where FORWARD sends). */
void io_link(struct io *a, struct io *b);
/* Ends that link. Neither stays paused for the other's out-queue: a server whose client was
 * slow to read the end of a result goes on reading for the next client. */
void io_unlink(struct io *a, struct io *b);

/*
 * Asks for on_drained once the out-queue has been written out (for an owner that closes
 * after its last bytes, seeing io_outq_len() > 0).
 */
static inline void io_notify_drained(struct io *io)
{
	io->notify_drain = true;
}

/* Bytes queued but not yet written. */
static inline size_t io_outq_len(const struct io *io)
{
	return io->outq.len - io->outq_off;
}

/* Unconsumed input bytes (for the startup phase, which is not pumped). */
static inline uint32_t io_in_len(const struct io *io)
{
	return io->rbuf ? io->rbuf->end - io->rbuf->start : 0;
}
static inline uint8_t *io_in_data(const struct io *io)
{
	return io->rbuf->data + io->rbuf->start;
}
/* Consumes n input bytes. */
void io_consume(struct io *io, uint32_t n);

/* Buffer pool owned by the context. */
struct iobuf_pool {
	struct iobuf *free;
	size_t n_free;
	size_t n_total; /* pooled buffers in existence (free or in use) */
};
void iobuf_pool_destroy(struct iobuf_pool *p);

/* Runs deferred write-failure notifications (called by the context's reaper). */
void io_run_deferred(struct pt_ctx *ctx);

#endif
