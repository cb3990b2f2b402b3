/* Cancel keys and forwarding cancel requests to PostgreSQL without blocking the loop. */
#include "pgtide/cancel.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "pgtide/log.h"
#include "pgtide/rnd.h"

struct cancel_entry {
	struct cancel_entry *next;
	uint32_t pid, key;
	struct client *client;
};

struct cancel_table {
	struct cancel_entry **buckets;
	size_t n_buckets; /* power of two */
	size_t n;
};

/* Worker threads in flight. Shared with the workers, hence atomic (not loop state). */
static atomic_int inflight;

static size_t bucket_of(const struct cancel_table *t, uint32_t pid, uint32_t key)
{
	uint64_t h = ((uint64_t)pid << 32 | key) * 0x9E3779B97F4A7C15ull;
	return (size_t)(h >> 32) & (t->n_buckets - 1);
}

struct cancel_table *cancel_table_new(void)
{
	struct cancel_table *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->n_buckets = 1024;
	t->buckets = calloc(t->n_buckets, sizeof(*t->buckets));
	if (!t->buckets) {
		free(t);
		return NULL;
	}
	return t;
}

void cancel_table_free(struct cancel_table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n_buckets; i++) {
		struct cancel_entry *e = t->buckets[i];
		while (e) {
			struct cancel_entry *next = e->next;
			free(e);
			e = next;
		}
	}
	free(t->buckets);
	free(t);
}

static void grow(struct cancel_table *t)
{
	size_t nb = t->n_buckets * 2;
	struct cancel_entry **b = calloc(nb, sizeof(*b));
	if (!b)
		return; /* keep the smaller table: slower, still correct */
	struct cancel_entry **old = t->buckets;
	size_t old_n = t->n_buckets;
	t->buckets = b;
	t->n_buckets = nb;
	for (size_t i = 0; i < old_n; i++) {
		struct cancel_entry *e = old[i];
		while (e) {
			struct cancel_entry *next = e->next;
			size_t k = bucket_of(t, e->pid, e->key);
			e->next = b[k];
			b[k] = e;
			e = next;
		}
	}
	free(old);
}

struct client *cancel_lookup(struct cancel_table *t, uint32_t pid, uint32_t key)
{
	for (struct cancel_entry *e = t->buckets[bucket_of(t, pid, key)]; e; e = e->next)
		if (e->pid == pid && e->key == key)
			return e->client;
	return NULL;
}

bool cancel_register(struct cancel_table *t, struct client *c, uint32_t *pid, uint32_t *key)
{
	struct cancel_entry *e = malloc(sizeof(*e));
	if (!e)
		return false;
	for (;;) {
		uint32_t r[2];
		if (!rnd_bytes(r, sizeof(uint32_t) * 2)) {
			free(e);
			return false;
		}
		/* A positive pid, as clients may print or compare it as a signed int. */
		r[0] = (r[0] & 0x7fffffffu) | 1u;
		if (!cancel_lookup(t, r[0], r[1])) {
			e->pid = r[0];
			e->key = r[1];
			break;
		}
	}
	e->client = c;
	if (t->n >= t->n_buckets)
		grow(t);
	size_t k = bucket_of(t, e->pid, e->key);
	e->next = t->buckets[k];
	t->buckets[k] = e;
	t->n++;
	*pid = e->pid;
	*key = e->key;
	return true;
}

void cancel_unregister(struct cancel_table *t, uint32_t pid, uint32_t key)
{
	struct cancel_entry **pp = &t->buckets[bucket_of(t, pid, key)];
	for (; *pp; pp = &(*pp)->next) {
		struct cancel_entry *e = *pp;
		if (e->pid == pid && e->key == key) {
			*pp = e->next;
			free(e);
			t->n--;
			return;
		}
	}
}

/* Shared by the worker and the server that asked: the last of the two frees it. */
struct cancel_ticket {
	atomic_int refs;
	atomic_bool done;
	PGcancel *pc;
};

bool cancel_ticket_done(const struct cancel_ticket *t)
{
	return atomic_load(&t->done);
}

void cancel_ticket_release(struct cancel_ticket *t)
{
	if (t && atomic_fetch_sub(&t->refs, 1) == 1) {
		if (t->pc)
			PQfreeCancel(t->pc);
		free(t);
	}
}

static void *cancel_worker(void *arg)
{
	struct cancel_ticket *t = arg;
	char err[256];
	/* PQcancel returns once the postmaster has closed the connection, after it signalled the
	 * backend. */
	if (!PQcancel(t->pc, err, sizeof(err)))
		log_warn("cancel request to server failed: %s", err);
	atomic_store(&t->done, true);
	cancel_ticket_release(t);
	atomic_fetch_sub(&inflight, 1);
	return NULL;
}

bool cancel_send(void *pgconn, struct cancel_ticket **ticket)
{
	if (ticket)
		*ticket = NULL;
	if (atomic_fetch_add(&inflight, 1) >= CANCEL_MAX_INFLIGHT) {
		atomic_fetch_sub(&inflight, 1);
		log_warn("too many cancel requests in flight, dropping one");
		return false;
	}
	struct cancel_ticket *tk = calloc(1, sizeof(*tk));
	/* PQgetCancel copies the backend's address and key: the ticket owns that copy. */
	PGcancel *pc = tk ? PQgetCancel(pgconn) : NULL;
	if (!pc) {
		free(tk);
		atomic_fetch_sub(&inflight, 1);
		return false;
	}
	tk->pc = pc;
	atomic_init(&tk->refs, ticket ? 2 : 1);
	atomic_init(&tk->done, false);
	pthread_attr_t attr;
	pthread_t th;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	int rc = pthread_create(&th, &attr, cancel_worker, tk);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		PQfreeCancel(pc);
		free(tk);
		atomic_fetch_sub(&inflight, 1);
		log_warn("could not start a cancel worker: %s", strerror(rc));
		return false;
	}
	if (ticket)
		*ticket = tk;
	return true;
}

int cancel_inflight(void)
{
	return atomic_load(&inflight);
}
