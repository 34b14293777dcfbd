/*
 * bench.c: the C reference side of the talloc-rs / tevent-rs workloads.
 *
 * It drives Samba's own libtalloc and libtevent (the Debian packages)
 * through the workloads that bench/README.md describes and prints its
 * results in the same line format as the Rust examples
 * (talloc_workloads, tevent_workloads, thread_workloads), so that
 * bench/compare.sh can put the two side by side.
 *
 *   bench [WORKLOAD|all [SIZE]]   run all workloads, or one (SIZE = its N)
 *   bench --list                  print the workload names, one a line
 *   bench --help                  print usage and the default sizes
 *
 * Exit status: 0 when everything ran, 1 when a library or system call or
 * one of our checks failed (the reason goes to stderr), 2 for a bad
 * command line.
 *
 * Build it with bench/c-bench.sh, or by hand:
 *   cc -O2 -Wall -Wextra bench.c $(pkg-config --cflags --libs talloc tevent) -lpthread
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <talloc.h>
#include <tevent.h>

/* tevent cannot tell its version at run time; the build script passes the
 * one pkg-config reports. */
#ifndef BENCH_TEVENT_VERSION
#define BENCH_TEVENT_VERSION "unknown"
#endif

#define REPETITIONS 5
#define UNUSED __attribute__((unused))

/* ===================================================================== */
/* Failing loudly                                                         */
/* ===================================================================== */

/* Report what went wrong and stop with status 1. `err` is an errno value
 * to explain, or 0 when there is none (talloc and tevent mostly signal
 * failure by a NULL or -1 without a trustworthy errno). */
static void __attribute__((noreturn, cold))
bail(const char *what, int line, int err)
{
	fflush(stdout);
	if (err != 0) {
		fprintf(stderr, "bench: %s failed (bench.c:%d): %s\n", what, line,
			strerror(err));
	} else {
		fprintf(stderr, "bench: %s failed (bench.c:%d)\n", what, line);
	}
	exit(1);
}

/* One well-predicted branch per use, so the checks can stay inside the
 * timed loops. */
#define MUST(cond, what) \
	do { if (__builtin_expect(!(cond), 0)) bail((what), __LINE__, 0); } while (0)
#define MUST_OS(cond, what) \
	do { if (__builtin_expect(!(cond), 0)) bail((what), __LINE__, errno); } while (0)
/* pthread functions return the error number instead of setting errno. */
#define MUST_PT(call, what) \
	do { int rc_ = (call); if (rc_ != 0) bail((what), __LINE__, rc_); } while (0)

static uint64_t clock_ns(void)
{
	struct timespec t;

	MUST_OS(clock_gettime(CLOCK_MONOTONIC, &t) == 0, "clock_gettime");
	return (uint64_t)t.tv_sec * UINT64_C(1000000000) + (uint64_t)t.tv_nsec;
}

static void loop_once(struct tevent_context *ev)
{
	MUST(tevent_loop_once(ev) == 0, "tevent_loop_once");
}

/* What one repetition reports: nanoseconds inside the timed part and the
 * number of operations done there. */
struct sample {
	uint64_t ns;
	uint64_t ops;
};

/* ===================================================================== */
/* talloc                                                                 */
/* ===================================================================== */

#define SMALL_OBJ 32

/* N children of 32 bytes under one fresh context; freeing the context
 * (timed as well) releases them newest first. */
static struct sample run_talloc_flat(uint64_t n)
{
	void *top = talloc_new(NULL);
	uint64_t start;

	MUST(top != NULL, "talloc_new");
	start = clock_ns();
	for (uint64_t k = 0; k < n; k++) {
		MUST(talloc_size(top, SMALL_OBJ) != NULL, "talloc_size");
	}
	MUST(talloc_free(top) == 0, "talloc_free");
	return (struct sample){ .ns = clock_ns() - start, .ops = n };
}

/* The same shape on plain glibc malloc, for the talloc/malloc ratio. */
static struct sample run_malloc_flat(uint64_t n)
{
	void **slot = malloc(n * sizeof(*slot));
	uint64_t start, stop;

	MUST_OS(slot != NULL, "malloc");
	memset(slot, 0, n * sizeof(*slot)); /* touch every page before timing */
	start = clock_ns();
	for (uint64_t k = 0; k < n; k++) {
		slot[k] = malloc(SMALL_OBJ);
		MUST_OS(slot[k] != NULL, "malloc");
	}
	for (uint64_t k = n; k > 0; k--) { /* newest first, as talloc does */
		free(slot[k - 1]);
	}
	stop = clock_ns();
	free(slot);
	return (struct sample){ .ns = stop - start, .ops = n };
}

#define FANOUT 10

/* Pre-order: this node first, then FANOUT subtrees one after the other. */
static void *grow(const void *parent, unsigned levels_below, uint64_t *made)
{
	void *node = talloc_size(parent, SMALL_OBJ);

	MUST(node != NULL, "talloc_size");
	*made += 1;
	if (levels_below != 0) {
		for (unsigned c = 0; c < FANOUT; c++) {
			grow(node, levels_below - 1, made);
		}
	}
	return node;
}

/* A full 10-ary tree with levels 0..depth, then one talloc_free of the
 * root; both timed. */
static struct sample run_talloc_tree(uint64_t depth)
{
	uint64_t made = 0, want = 0, width = 1, start, stop;
	void *root;

	for (uint64_t level = 0; level <= depth; level++) {
		want += width;
		width *= FANOUT;
	}
	start = clock_ns();
	root = grow(NULL, (unsigned)depth, &made);
	MUST(talloc_free(root) == 0, "talloc_free");
	stop = clock_ns();
	MUST(made == want, "tree node count");
	return (struct sample){ .ns = stop - start, .ops = made };
}

#define RING 1024

/* 1024 live children; each step frees the oldest and allocates its
 * replacement in the same ring position. */
static struct sample run_talloc_churn(uint64_t n)
{
	void *ring[RING];
	void *owner = talloc_new(NULL);
	uint64_t start, stop;

	MUST(owner != NULL, "talloc_new");
	for (unsigned j = 0; j < RING; j++) {
		ring[j] = talloc_size(owner, SMALL_OBJ);
		MUST(ring[j] != NULL, "talloc_size");
	}
	start = clock_ns();
	for (uint64_t k = 0; k < n; k++) {
		void **pos = &ring[k % RING];

		MUST(talloc_free(*pos) == 0, "talloc_free");
		*pos = talloc_size(owner, SMALL_OBJ);
		MUST(*pos != NULL, "talloc_size");
	}
	stop = clock_ns();
	MUST(talloc_free(owner) == 0, "talloc_free");
	return (struct sample){ .ns = stop - start, .ops = n };
}

#define KIDS 100000

/* 100,000 children shuttle between two parents: pass 0 moves each from A
 * to B in index order, pass 1 back to A, and so on. */
static struct sample run_talloc_steal(uint64_t n)
{
	void **kid = malloc(KIDS * sizeof(*kid));
	void *a = talloc_new(NULL);
	void *b = talloc_new(NULL);
	uint64_t start, stop, final_pass;
	void *final_home;

	MUST_OS(kid != NULL, "malloc");
	MUST(a != NULL, "talloc_new");
	MUST(b != NULL, "talloc_new");
	for (unsigned k = 0; k < KIDS; k++) {
		kid[k] = talloc_size(a, SMALL_OBJ);
		MUST(kid[k] != NULL, "talloc_size");
	}
	start = clock_ns();
	for (uint64_t k = 0; k < n; k++) {
		void *child = kid[k % KIDS];
		void *to = (k / KIDS) % 2 == 0 ? b : a;

		MUST(talloc_steal(to, child) == child, "talloc_steal");
	}
	stop = clock_ns();
	final_pass = (n - 1) / KIDS;
	final_home = final_pass % 2 == 0 ? b : a;
	MUST(talloc_parent(kid[(n - 1) % KIDS]) == final_home, "talloc_steal (parent after)");
	MUST(talloc_free(a) == 0, "talloc_free");
	MUST(talloc_free(b) == 0, "talloc_free");
	free(kid);
	return (struct sample){ .ns = stop - start, .ops = n };
}

static uint64_t destructor_runs;

static int note_destruction(void *p UNUSED)
{
	destructor_runs++;
	return 0;
}

/* N children, each with a destructor that counts, then free the parent. */
static struct sample run_talloc_destructor(uint64_t n)
{
	void *top = talloc_new(NULL);
	uint64_t start, stop;

	MUST(top != NULL, "talloc_new");
	destructor_runs = 0;
	start = clock_ns();
	for (uint64_t k = 0; k < n; k++) {
		void *child = talloc_size(top, SMALL_OBJ);

		MUST(child != NULL, "talloc_size");
		talloc_set_destructor(child, note_destruction);
	}
	MUST(talloc_free(top) == 0, "talloc_free");
	stop = clock_ns();
	MUST(destructor_runs == n, "destructor count");
	return (struct sample){ .ns = stop - start, .ops = n };
}

#define BATCH 10000
#define POOL_OBJ 64
#define MIB (1024u * 1024u)

/* N objects of 64 bytes in batches of 10,000: allocate the batch, then
 * free it oldest first. pool_bytes == 0 means a plain context, no pool. */
static struct sample batches(uint64_t n, size_t pool_bytes)
{
	void **obj = malloc(BATCH * sizeof(*obj));
	void *ctx = pool_bytes != 0 ? talloc_pool(NULL, pool_bytes) : talloc_new(NULL);
	uint64_t start, stop, left;

	MUST_OS(obj != NULL, "malloc");
	MUST(ctx != NULL, pool_bytes != 0 ? "talloc_pool" : "talloc_new");
	start = clock_ns();
	for (left = n; left > 0;) {
		uint64_t now = left < BATCH ? left : BATCH;

		for (uint64_t k = 0; k < now; k++) {
			obj[k] = talloc_size(ctx, POOL_OBJ);
			MUST(obj[k] != NULL, "talloc_size");
		}
		for (uint64_t k = 0; k < now; k++) {
			MUST(talloc_free(obj[k]) == 0, "talloc_free");
		}
		left -= now;
	}
	stop = clock_ns();
	MUST(talloc_free(ctx) == 0, "talloc_free");
	free(obj);
	return (struct sample){ .ns = stop - start, .ops = n };
}

static struct sample run_talloc_pool(uint64_t n) { return batches(n, 1 * MIB); }
static struct sample run_talloc_pool_2mib(uint64_t n) { return batches(n, 2 * MIB); }
static struct sample run_talloc_nopool(uint64_t n) { return batches(n, 0); }

/* Untimed: fill one batch into a fresh pool and count how many objects
 * lie inside the pool's own memory (talloc mallocs the rest once the pool
 * is full); also show the distance between the first two objects. */
static void pool_fit_note(size_t pool_bytes)
{
	char **obj = malloc(BATCH * sizeof(*obj));
	char *pool = talloc_pool(NULL, pool_bytes);
	unsigned in_pool = 0;

	MUST_OS(obj != NULL, "malloc");
	MUST(pool != NULL, "talloc_pool");
	for (unsigned k = 0; k < BATCH; k++) {
		obj[k] = talloc_size(pool, POOL_OBJ);
		MUST(obj[k] != NULL, "talloc_size");
		if (obj[k] >= pool && obj[k] < pool + pool_bytes) {
			in_pool++;
		}
	}
	printf("# note: a %zu-byte pool holds %u of the %u objects in a batch "
	       "(%td bytes each in the pool for %u requested); any others are malloc'd\n",
	       pool_bytes, in_pool, (unsigned)BATCH, obj[1] - obj[0], (unsigned)POOL_OBJ);
	MUST(talloc_free(pool) == 0, "talloc_free");
	free(obj);
}

static void note_pool_1mib(uint64_t n UNUSED) { pool_fit_note(1 * MIB); }
static void note_pool_2mib(uint64_t n UNUSED) { pool_fit_note(2 * MIB); }

/* ===================================================================== */
/* tevent, one thread                                                     */
/* ===================================================================== */

struct tally {
	uint64_t seen;
	uint64_t goal;
};

static void immediate_fired(struct tevent_context *ev, struct tevent_immediate *im,
			    void *arg)
{
	struct tally *t = arg;

	t->seen++;
	if (t->seen < t->goal) {
		/* the very same immediate again, from inside its handler */
		tevent_schedule_immediate(im, ev, immediate_fired, t);
	}
}

static struct sample run_tevent_immediate(uint64_t n)
{
	struct tally t = { .seen = 0, .goal = n };
	struct tevent_context *ev = tevent_context_init(NULL);
	struct tevent_immediate *im;
	uint64_t start, stop;

	MUST(ev != NULL, "tevent_context_init");
	im = tevent_create_immediate(ev);
	MUST(im != NULL, "tevent_create_immediate");
	start = clock_ns();
	tevent_schedule_immediate(im, ev, immediate_fired, &t);
	while (t.seen < n) {
		loop_once(ev);
	}
	stop = clock_ns();
	MUST(talloc_free(ev) == 0, "talloc_free");
	return (struct sample){ .ns = stop - start, .ops = n };
}

static void timer_fired(struct tevent_context *ev UNUSED, struct tevent_timer *te UNUSED,
			struct timeval now UNUSED, void *arg)
{
	struct tally *t = arg;

	t->seen++;
}

/* N timers that all share one deadline (read once, inside the timed part). */
static struct sample run_tevent_timer(uint64_t n)
{
	struct tally t = { .seen = 0, .goal = n };
	struct tevent_context *ev = tevent_context_init(NULL);
	struct timeval when;
	uint64_t start, stop;

	MUST(ev != NULL, "tevent_context_init");
	start = clock_ns();
	when = tevent_timeval_current();
	for (uint64_t k = 0; k < n; k++) {
		MUST(tevent_add_timer(ev, ev, when, timer_fired, &t) != NULL, "tevent_add_timer");
	}
	while (t.seen < n) {
		loop_once(ev);
	}
	stop = clock_ns();
	MUST(t.seen == n, "timer count");
	MUST(talloc_free(ev) == 0, "talloc_free");
	return (struct sample){ .ns = stop - start, .ops = n };
}

/* xorshift64* (S. Vigna), as WORKLOADS defines it: three shifts of the
 * state, then a wrapping multiply for the output. */
static uint64_t xs64star(uint64_t *state)
{
	uint64_t x = *state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * UINT64_C(0x2545F4914F6CDD1D);
}

#define US_PER_S UINT64_C(1000000)

struct order_check {
	uint64_t fired;
	struct timeval prev; /* deadline of the timer that fired last */
};

/* Per-timer private data: tevent hands the handler the current time, so
 * the deadline travels with the timer. */
struct deadline {
	struct order_check *oc;
	struct timeval due;
	bool done;
};

static void random_timer_fired(struct tevent_context *ev UNUSED,
			       struct tevent_timer *te UNUSED,
			       struct timeval now UNUSED, void *arg)
{
	struct deadline *d = arg;
	struct order_check *oc = d->oc;

	MUST(!d->done, "timer fired once");
	MUST(tevent_timeval_compare(&d->due, &oc->prev) >= 0, "timer deadline order");
	d->done = true;
	oc->prev = d->due;
	oc->fired++;
}

/* N timers, already due, added in pseudo-random deadline order. */
static struct sample run_tevent_timer_random(uint64_t n)
{
	struct order_check oc = { .fired = 0, .prev = { 0, 0 } };
	struct deadline *dl = malloc(n * sizeof(*dl));
	uint32_t *offset_us = malloc(n * sizeof(*offset_us));
	struct tevent_context *ev = tevent_context_init(NULL);
	uint64_t rng = 42, start, stop, first_us;
	struct timeval now;

	MUST_OS(dl != NULL && offset_us != NULL, "malloc");
	MUST(ev != NULL, "tevent_context_init");
	for (uint64_t k = 0; k < n; k++) { /* untimed: the random offsets */
		offset_us[k] = (uint32_t)(xs64star(&rng) % US_PER_S);
		dl[k].oc = &oc;
		dl[k].done = false;
	}
	start = clock_ns();
	now = tevent_timeval_current();
	/* one second back: every deadline is in [now - 1 s, now - 1 us] */
	first_us = (uint64_t)now.tv_sec * US_PER_S + (uint64_t)now.tv_usec - US_PER_S;
	for (uint64_t k = 0; k < n; k++) {
		uint64_t at = first_us + offset_us[k];

		dl[k].due.tv_sec = (time_t)(at / US_PER_S);
		dl[k].due.tv_usec = (suseconds_t)(at % US_PER_S);
		MUST(tevent_add_timer(ev, ev, dl[k].due, random_timer_fired, &dl[k]) != NULL,
		     "tevent_add_timer");
	}
	while (oc.fired < n) {
		loop_once(ev);
	}
	stop = clock_ns();
	MUST(oc.fired == n, "timer count");
	for (uint64_t k = 0; k < n; k++) {
		MUST(dl[k].done, "every timer fired");
	}
	MUST(talloc_free(ev) == 0, "talloc_free");
	free(offset_us);
	free(dl);
	return (struct sample){ .ns = stop - start, .ops = n };
}

struct socket_end {
	struct tally *hops;
	int fd;
};

/* The byte arrived on this end: take it and send it on to the other. */
static void byte_arrived(struct tevent_context *ev UNUSED, struct tevent_fd *fde UNUSED,
			 uint16_t flags, void *arg)
{
	struct socket_end *end = arg;
	char byte;

	MUST(flags & TEVENT_FD_READ, "fd readable");
	MUST_OS(read(end->fd, &byte, 1) == 1, "read");
	end->hops->seen++;
	if (end->hops->seen < end->hops->goal) {
		MUST_OS(write(end->fd, &byte, 1) == 1, "write");
	}
}

static struct sample run_tevent_fd_pingpong(uint64_t n)
{
	struct tally hops = { .seen = 0, .goal = n };
	struct socket_end end[2];
	struct tevent_context *ev;
	int sv[2];
	uint64_t start, stop;

	MUST_OS(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0,
		"socketpair");
	ev = tevent_context_init(NULL);
	MUST(ev != NULL, "tevent_context_init");
	for (int e = 0; e < 2; e++) {
		end[e].hops = &hops;
		end[e].fd = sv[e];
		MUST(tevent_add_fd(ev, ev, sv[e], TEVENT_FD_READ, byte_arrived, &end[e]) != NULL,
		     "tevent_add_fd");
	}
	start = clock_ns();
	MUST_OS(write(sv[0], "x", 1) == 1, "write");
	while (hops.seen < n) {
		loop_once(ev);
	}
	stop = clock_ns();
	MUST(talloc_free(ev) == 0, "talloc_free");
	MUST_OS(close(sv[0]) == 0, "close");
	MUST_OS(close(sv[1]) == 0, "close");
	return (struct sample){ .ns = stop - start, .ops = n };
}

/* ===================================================================== */
/* tevent, two threads: N round trips                                     */
/* ===================================================================== */

/*
 * Shared harness of the two round-trip workloads. The main thread (the
 * "master") loops on ev_master until it has served N requests; a worker
 * thread owns ev_worker and runs the timed loop:
 *     for i in 0..N-1: send request i; loop until reply i is in
 * The master answers from inside its request handler. Each counter is
 * written by one thread only; tevent's own locking orders the hand-over
 * of every message. After the join the main thread frees the worker's
 * objects, as Samba's tests do.
 */
struct duo {
	uint64_t n;
	uint64_t served;  /* master thread only */
	uint64_t replies; /* worker thread only */
	uint64_t elapsed; /* written by the worker, read after the join */
	struct tevent_context *ev_master;
	struct tevent_context *ev_worker;
	void (*worker_setup)(struct duo *d);
	void (*send_request)(struct duo *d, uint64_t seq);

	/* tevent_thread_proxy_roundtrip */
	struct tevent_thread_proxy *proxy_to_master;
	struct tevent_thread_proxy *proxy_to_worker;

	/* tevent_threaded_immediate */
	struct tevent_threaded_context *tctx_master;
	struct tevent_threaded_context *tctx_worker;
	struct tevent_immediate *request_im[2]; /* on ev_master */
	struct tevent_immediate *reply_im[2];   /* on ev_worker */
};

static void *duo_worker(void *arg)
{
	struct duo *d = arg;
	uint64_t start;

	d->ev_worker = tevent_context_init(NULL);
	MUST(d->ev_worker != NULL, "tevent_context_init");
	d->worker_setup(d);
	start = clock_ns();
	for (uint64_t seq = 0; seq < d->n; seq++) {
		d->send_request(d, seq);
		while (d->replies == seq) {
			loop_once(d->ev_worker);
		}
	}
	d->elapsed = clock_ns() - start;
	return NULL;
}

/* Start the worker, serve until done, join. */
static void duo_play(struct duo *d)
{
	pthread_t worker;

	MUST_PT(pthread_create(&worker, NULL, duo_worker, d), "pthread_create");
	while (d->served < d->n) {
		loop_once(d->ev_master);
	}
	MUST_PT(pthread_join(worker, NULL), "pthread_join");
	MUST(d->replies == d->n, "reply count");
}

/* --- through tevent_thread_proxy: a fresh message each time --- */

struct rt_msg {
	struct duo *d;
	uint64_t seq;
};

static void proxy_post(struct tevent_thread_proxy *tp, struct duo *d, uint64_t seq,
		       tevent_immediate_handler_t fn)
{
	struct tevent_immediate *im = tevent_create_immediate(NULL);
	struct rt_msg *m = talloc(NULL, struct rt_msg);

	MUST(im != NULL, "tevent_create_immediate");
	MUST(m != NULL, "talloc");
	m->d = d;
	m->seq = seq;
	tevent_thread_proxy_schedule(tp, &im, fn, &m);
	/* No return value: success is both pointers taken over (NULLed). */
	MUST(im == NULL && m == NULL, "tevent_thread_proxy_schedule");
}

static void proxy_reply_in(struct tevent_context *ev UNUSED,
			   struct tevent_immediate *im UNUSED, void *arg)
{
	struct rt_msg *m = talloc_get_type_abort(arg, struct rt_msg);

	MUST(m->seq == m->d->replies, "reply sequence");
	m->d->replies++;
}

static void proxy_request_in(struct tevent_context *ev UNUSED,
			     struct tevent_immediate *im UNUSED, void *arg)
{
	struct rt_msg *m = talloc_get_type_abort(arg, struct rt_msg);
	struct duo *d = m->d;

	MUST(m->seq == d->served, "request sequence");
	d->served++;
	proxy_post(d->proxy_to_worker, d, m->seq, proxy_reply_in);
}

static void proxy_worker_setup(struct duo *d)
{
	d->proxy_to_worker = tevent_thread_proxy_create(d->ev_worker);
	MUST(d->proxy_to_worker != NULL, "tevent_thread_proxy_create");
}

static void proxy_send_request(struct duo *d, uint64_t seq)
{
	proxy_post(d->proxy_to_master, d, seq, proxy_request_in);
}

static struct sample run_thread_proxy_roundtrip(uint64_t n)
{
	struct duo d = {
		.n = n,
		.worker_setup = proxy_worker_setup,
		.send_request = proxy_send_request,
	};

	d.ev_master = tevent_context_init(NULL);
	MUST(d.ev_master != NULL, "tevent_context_init");
	d.proxy_to_master = tevent_thread_proxy_create(d.ev_master);
	MUST(d.proxy_to_master != NULL, "tevent_thread_proxy_create");
	duo_play(&d);
	/* each proxy belongs to its event context and goes with it */
	MUST(talloc_free(d.ev_worker) == 0, "talloc_free");
	MUST(talloc_free(d.ev_master) == 0, "talloc_free");
	return (struct sample){ .ns = d.elapsed, .ops = n };
}

/* --- through tevent_threaded_schedule_immediate: no allocation --- */

/*
 * tevent 0.14 still touches an immediate after its handler returned, and
 * the master replies from within its handler; so every direction takes
 * turns between two immediates, and one is scheduled again only after a
 * later message has shown that its previous run is over.
 */
static void threaded_reply_in(struct tevent_context *ev UNUSED,
			      struct tevent_immediate *im, void *arg)
{
	struct duo *d = arg;

	MUST(im == d->reply_im[d->replies & 1], "reply immediate");
	d->replies++;
}

static void threaded_request_in(struct tevent_context *ev UNUSED,
				struct tevent_immediate *im, void *arg)
{
	struct duo *d = arg;
	uint64_t seq = d->served++;

	MUST(im == d->request_im[seq & 1], "request immediate");
	tevent_threaded_schedule_immediate(d->tctx_worker, d->reply_im[seq & 1],
					   threaded_reply_in, d);
}

static void threaded_worker_setup(struct duo *d)
{
	d->tctx_worker = tevent_threaded_context_create(d->ev_worker, d->ev_worker);
	MUST_OS(d->tctx_worker != NULL, "tevent_threaded_context_create");
	for (int k = 0; k < 2; k++) {
		d->reply_im[k] = tevent_create_immediate(d->ev_worker);
		MUST(d->reply_im[k] != NULL, "tevent_create_immediate");
	}
}

static void threaded_send_request(struct duo *d, uint64_t seq)
{
	tevent_threaded_schedule_immediate(d->tctx_master, d->request_im[seq & 1],
					   threaded_request_in, d);
}

static struct sample run_threaded_immediate(uint64_t n)
{
	struct duo d = {
		.n = n,
		.worker_setup = threaded_worker_setup,
		.send_request = threaded_send_request,
	};

	d.ev_master = tevent_context_init(NULL);
	MUST(d.ev_master != NULL, "tevent_context_init");
	d.tctx_master = tevent_threaded_context_create(d.ev_master, d.ev_master);
	MUST_OS(d.tctx_master != NULL, "tevent_threaded_context_create");
	for (int k = 0; k < 2; k++) {
		d.request_im[k] = tevent_create_immediate(d.ev_master);
		MUST(d.request_im[k] != NULL, "tevent_create_immediate");
	}
	duo_play(&d);
	/* a threaded context has to go before its event context */
	MUST(talloc_free(d.tctx_worker) == 0, "talloc_free");
	MUST(talloc_free(d.ev_worker) == 0, "talloc_free");
	MUST(talloc_free(d.tctx_master) == 0, "talloc_free");
	MUST(talloc_free(d.ev_master) == 0, "talloc_free");
	return (struct sample){ .ns = d.elapsed, .ops = n };
}

/* ===================================================================== */
/* tevent, many threads: one-way fan-in                                   */
/* ===================================================================== */

#define SENDERS 8

struct fanin {
	struct tevent_thread_proxy *proxy; /* set before the senders start */
	pthread_barrier_t go;
	uint64_t per_sender;               /* M */
	/* the rest is touched by the master thread only */
	uint8_t *outstanding;              /* [sender * M + seq]: 1 until it arrived */
	uint64_t arrived;
	uint64_t late;
	uint64_t got[SENDERS];
	uint64_t next_expected[SENDERS];   /* 1 + highest seq seen so far */
};

struct sender {
	struct fanin *f;
	uint64_t id;
	TALLOC_CTX *mem;    /* the sender's own context; freed by main after join */
	uint64_t go_ns;     /* its clock reading right after the barrier */
};

struct fanin_msg {
	struct fanin *f;
	uint64_t sender;
	uint64_t seq;
};

static void fanin_arrived(struct tevent_context *ev UNUSED,
			  struct tevent_immediate *im UNUSED, void *arg)
{
	struct fanin_msg *m = talloc_get_type_abort(arg, struct fanin_msg);
	struct fanin *f = m->f;
	uint64_t who = m->sender, seq = m->seq;
	uint8_t *mark;

	MUST(who < SENDERS && seq < f->per_sender, "message id");
	mark = &f->outstanding[who * f->per_sender + seq];
	MUST(*mark == 1, "message arrived once");
	*mark = 0;
	if (seq < f->next_expected[who]) {
		f->late++;
	} else {
		f->next_expected[who] = seq + 1;
	}
	f->got[who]++;
	f->arrived++;
}

static void barrier_pass(pthread_barrier_t *b)
{
	int rc = pthread_barrier_wait(b);

	if (rc != 0 && rc != PTHREAD_BARRIER_SERIAL_THREAD) {
		bail("pthread_barrier_wait", __LINE__, rc);
	}
}

static void *sender_thread(void *arg)
{
	struct sender *s = arg;
	struct fanin *f = s->f;

	s->mem = talloc_new(NULL);
	MUST(s->mem != NULL, "talloc_new");
	barrier_pass(&f->go);
	s->go_ns = clock_ns();
	for (uint64_t seq = 0; seq < f->per_sender; seq++) {
		struct tevent_immediate *im = tevent_create_immediate(s->mem);
		struct fanin_msg *m = talloc(s->mem, struct fanin_msg);

		MUST(im != NULL, "tevent_create_immediate");
		MUST(m != NULL, "talloc");
		m->f = f;
		m->sender = s->id;
		m->seq = seq;
		tevent_thread_proxy_schedule(f->proxy, &im, fanin_arrived, &m);
		MUST(im == NULL && m == NULL, "tevent_thread_proxy_schedule");
	}
	return NULL;
}

/* The out-of-order count of each repetition, for the note line. */
static uint64_t fanin_late_log[REPETITIONS];
static unsigned fanin_late_logged;

static struct sample run_thread_proxy_fanin(uint64_t m)
{
	struct fanin f = { .per_sender = m };
	struct sender s[SENDERS];
	pthread_t tid[SENDERS];
	uint64_t total = SENDERS * m, start, stop;
	struct tevent_context *ev = tevent_context_init(NULL);

	MUST(ev != NULL, "tevent_context_init");
	f.proxy = tevent_thread_proxy_create(ev);
	MUST(f.proxy != NULL, "tevent_thread_proxy_create");
	f.outstanding = malloc(total);
	MUST_OS(f.outstanding != NULL, "malloc");
	memset(f.outstanding, 1, total);
	MUST_PT(pthread_barrier_init(&f.go, NULL, SENDERS + 1), "pthread_barrier_init");
	for (unsigned k = 0; k < SENDERS; k++) {
		s[k] = (struct sender){ .f = &f, .id = k };
		MUST_PT(pthread_create(&tid[k], NULL, sender_thread, &s[k]), "pthread_create");
	}
	barrier_pass(&f.go);
	start = clock_ns();
	while (f.arrived < total) {
		loop_once(ev);
	}
	stop = clock_ns();
	for (unsigned k = 0; k < SENDERS; k++) {
		MUST_PT(pthread_join(tid[k], NULL), "pthread_join");
		/* the clock starts when the barrier let the first thread go */
		if (s[k].go_ns < start) {
			start = s[k].go_ns;
		}
	}
	MUST(f.arrived == total, "message count");
	for (unsigned k = 0; k < SENDERS; k++) {
		MUST(f.got[k] == m, "messages per sender");
		/* the proxy took everything the sender allocated */
		MUST(talloc_total_blocks(s[k].mem) == 1, "sender context empty");
		MUST(talloc_free(s[k].mem) == 0, "talloc_free");
	}
	MUST(memchr(f.outstanding, 1, total) == NULL, "every message arrived");
	MUST_PT(pthread_barrier_destroy(&f.go), "pthread_barrier_destroy");
	/* takes the proxy and the last batch's leftovers with it */
	MUST(talloc_free(ev) == 0, "talloc_free");
	free(f.outstanding);
	if (fanin_late_logged < REPETITIONS) {
		fanin_late_log[fanin_late_logged++] = f.late;
	}
	return (struct sample){ .ns = stop - start, .ops = total };
}

static void note_fanin(uint64_t m)
{
	printf("# note: messages that arrived after a higher sequence number of the same "
	       "sender, per repetition:");
	for (unsigned r = 0; r < fanin_late_logged; r++) {
		printf(" %" PRIu64, fanin_late_log[r]);
	}
	printf(" (of %" PRIu64 ")\n", (uint64_t)SENDERS * m);
	fanin_late_logged = 0;
}

/* ===================================================================== */
/* The table and the driver                                               */
/* ===================================================================== */

struct workload {
	const char *name;
	uint64_t default_size;
	uint64_t max_size;
	const char *size_means; /* shown by --help when SIZE is not simply N */
	struct sample (*run)(uint64_t size);
	void (*note)(uint64_t size); /* optional "# note:" after the data line */
};

static const struct workload table[] = {
	{ "talloc_alloc_free_flat", 1000000, 100000000, NULL, run_talloc_flat, NULL },
	{ "malloc_free_flat", 1000000, 100000000, NULL, run_malloc_flat, NULL },
	{ "talloc_tree_build_free", 6, 7, "tree depth", run_talloc_tree, NULL },
	{ "talloc_churn", 2000000, UINT64_MAX, NULL, run_talloc_churn, NULL },
	{ "talloc_steal", 2000000, UINT64_MAX, NULL, run_talloc_steal, NULL },
	{ "talloc_destructor_free", 1000000, 100000000, NULL, run_talloc_destructor, NULL },
	{ "talloc_pool", 2000000, UINT64_MAX, NULL, run_talloc_pool, note_pool_1mib },
	{ "talloc_pool_2mib", 2000000, UINT64_MAX, NULL, run_talloc_pool_2mib, note_pool_2mib },
	{ "talloc_nopool", 2000000, UINT64_MAX, NULL, run_talloc_nopool, NULL },
	{ "tevent_immediate", 1000000, UINT64_MAX, NULL, run_tevent_immediate, NULL },
	{ "tevent_timer", 100000, 100000000, NULL, run_tevent_timer, NULL },
	{ "tevent_timer_random", 20000, 1000000, NULL, run_tevent_timer_random, NULL },
	{ "tevent_fd_pingpong", 200000, UINT64_MAX, NULL, run_tevent_fd_pingpong, NULL },
	{ "tevent_thread_proxy_roundtrip", 100000, UINT64_MAX, NULL,
	  run_thread_proxy_roundtrip, NULL },
	{ "tevent_threaded_immediate", 100000, UINT64_MAX, NULL, run_threaded_immediate, NULL },
	{ "tevent_thread_proxy_fanin", 20000, 10000000, "messages per sender, 8 senders",
	  run_thread_proxy_fanin, note_fanin },
};
#define TABLE_LEN (sizeof(table) / sizeof(table[0]))

/* Five repetitions, each on fresh state; prints the data line. */
static void measure(const struct workload *w, uint64_t size)
{
	double per_op[REPETITIONS];
	uint64_t ops = 0;

	for (int r = 0; r < REPETITIONS; r++) {
		struct sample s = w->run(size);

		MUST(s.ops > 0 && (r == 0 || s.ops == ops), "op count");
		ops = s.ops;
		per_op[r] = (double)s.ns / (double)s.ops;
	}
	/* insertion sort: the median is the middle one, the minimum the first */
	for (int i = 1; i < REPETITIONS; i++) {
		double v = per_op[i];
		int j = i;

		for (; j > 0 && per_op[j - 1] > v; j--) {
			per_op[j] = per_op[j - 1];
		}
		per_op[j] = v;
	}
	printf("%s\t%" PRIu64 "\t%.2f\t%.2f\n", w->name, ops,
	       per_op[REPETITIONS / 2], per_op[0]);
	if (w->note != NULL) {
		w->note(size);
	}
	fflush(stdout);
}

/* How many of our file descriptors are epoll instances (-1: no /proc). */
static int epoll_fd_count(void)
{
	DIR *dir = opendir("/proc/self/fd");
	struct dirent *e;
	int found = 0;

	if (dir == NULL) {
		return -1;
	}
	while ((e = readdir(dir)) != NULL) {
		char link[64];
		ssize_t len;

		if (e->d_name[0] == '.') {
			continue;
		}
		len = readlinkat(dirfd(dir), e->d_name, link, sizeof(link) - 1);
		if (len <= 0) {
			continue;
		}
		link[len] = '\0';
		if (strcmp(link, "anon_inode:[eventpoll]") == 0) {
			found++;
		}
	}
	closedir(dir);
	return found;
}

/* The four comment lines that open every run. */
static void header(void)
{
	const char **names = tevent_backend_list(NULL);
	const struct tevent_ops *dflt = tevent_find_ops_byname(NULL);
	const char *dflt_name = "unknown";
	struct tevent_context *ev;
	int epolls_before, epolls_after;
	bool uses_epoll;

	MUST(names != NULL, "tevent_backend_list");
	for (size_t i = 0; names[i] != NULL; i++) {
		if (dflt != NULL && tevent_find_ops_byname(names[i]) == dflt) {
			dflt_name = names[i];
		}
	}
	/* Does a default context open an epoll instance? */
	epolls_before = epoll_fd_count();
	ev = tevent_context_init(NULL);
	MUST(ev != NULL, "tevent_context_init");
	epolls_after = epoll_fd_count();
	uses_epoll = epolls_before >= 0 && epolls_after > epolls_before;

	printf("# talloc %d.%d tevent %s backend %s%s\n", talloc_version_major(),
	       talloc_version_minor(), BENCH_TEVENT_VERSION, dflt_name,
	       uses_epoll ? "/epoll" : "");
	printf("# tevent_backends");
	for (size_t i = 0; names[i] != NULL; i++) {
		printf(" %s", names[i]);
	}
	printf("\n");
	printf("# reps %d, clock CLOCK_MONOTONIC, cpus %ld\n", REPETITIONS,
	       sysconf(_SC_NPROCESSORS_ONLN));
	printf("# name\tops\tmedian_ns_per_op\tmin_ns_per_op\n");
	fflush(stdout);
	MUST(talloc_free(ev) == 0, "talloc_free");
	MUST(talloc_free(names) == 0, "talloc_free");
}

static void usage(FILE *to)
{
	fprintf(to, "usage: bench [WORKLOAD|all [SIZE]] | --list | --help\nworkloads:\n");
	for (size_t i = 0; i < TABLE_LEN; i++) {
		fprintf(to, "  %-30s default size %" PRIu64, table[i].name,
			table[i].default_size);
		if (table[i].size_means != NULL) {
			fprintf(to, " (%s)", table[i].size_means);
		}
		fputc('\n', to);
	}
}

/* SIZE: a plain decimal number in 1..max, nothing else. */
static bool parse_size(const char *text, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (text[0] < '0' || text[0] > '9') {
		return false;
	}
	errno = 0;
	v = strtoull(text, &end, 10);
	if (errno != 0 || *end != '\0' || v == 0 || v > max) {
		return false;
	}
	*out = (uint64_t)v;
	return true;
}

int main(int argc, char **argv)
{
	const struct workload *only = NULL;
	uint64_t size = 0;
	struct rusage ru;

	/* tevent_thread_proxy needs this; it is set once for every workload. */
	talloc_disable_null_tracking();

	if (argc > 3) {
		usage(stderr);
		return 2;
	}
	if (argc > 1 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
		usage(stdout);
		return 0;
	}
	if (argc > 1 && strcmp(argv[1], "--list") == 0) {
		for (size_t i = 0; i < TABLE_LEN; i++) {
			printf("%s\n", table[i].name);
		}
		return 0;
	}
	if (argc > 1 && strcmp(argv[1], "all") != 0) {
		for (size_t i = 0; i < TABLE_LEN && only == NULL; i++) {
			if (strcmp(argv[1], table[i].name) == 0) {
				only = &table[i];
			}
		}
		if (only == NULL) {
			fprintf(stderr, "unknown workload '%s'\n", argv[1]);
			usage(stderr);
			return 2;
		}
	}
	if (argc > 2 && (only == NULL || !parse_size(argv[2], only->max_size, &size))) {
		fprintf(stderr, "bad SIZE '%s' (needs one workload, 1..%" PRIu64 ")\n", argv[2],
			only != NULL ? only->max_size : 0);
		return 2;
	}

	header();
	for (size_t i = 0; i < TABLE_LEN; i++) {
		if (only == NULL || only == &table[i]) {
			measure(&table[i], size != 0 ? size : table[i].default_size);
		}
	}
	MUST_OS(getrusage(RUSAGE_SELF, &ru) == 0, "getrusage");
	printf("# maxrss_kb %ld\n", ru.ru_maxrss);
	return 0;
}
