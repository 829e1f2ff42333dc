/*
 * writeperf: a small load generator on libiscsi's asynchronous API, for
 * lunboot's benchmark (scripts/bench.sh, scripts/benchtarget).
 *
 * Debian's iscsi-perf (libiscsi-bin 1.19) only issues READ(16), so the
 * benchmark's write rows need another libiscsi client. This one measures
 * the way iscsi-perf does: one thread, one session, a poll(2) loop around
 * iscsi_service(), a fixed number of tasks kept in flight (each completion
 * queues the next task from its callback), requests of a fixed number of
 * blocks at sequential LBAs (wrapping at the end of the LUN) or random
 * ones, for a fixed duration, header digest offered as None first. It
 * writes with WRITE(16) by default; -o read issues READ(16) instead, so the
 * harness can be checked against iscsi-perf itself on the same target.
 *
 * Random requests start at a multiple of the request size (like lunboot
 * bench, unlike iscsi-perf, which starts them at any block).
 *
 * Build:  cc -O2 -o writeperf writeperf.c -liscsi     (Debian libiscsi-dev)
 * Usage:  writeperf [-o write|read] [-m in_flight] [-b blocks] [-t seconds]
 *                   [-r] [-i initiator-iqn] iscsi://<host>[:<port>]/<iqn>/<lun>
 *
 * On success the last line of standard output is, for scripts:
 *
 *   writeperf: op=write pattern=seq block=131072 depth=32 ops=N
 *       bytes=N seconds=S iops=X mb_per_s=Y
 *
 * (one line; MB are 10^6 bytes). Errors go to standard error with a
 * non-zero exit status. Every wait is bounded: a run that makes no
 * progress for 30 s fails.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

#define STALL_LIMIT_NS (30ULL * 1000000000ULL)

struct run {
	struct iscsi_context *iscsi;
	int lun;
	int write;          /* WRITE(16) rather than READ(16) */
	int random;         /* random rather than sequential LBAs */
	int depth;          /* tasks kept in flight */
	uint32_t blocks;    /* blocks per request */
	uint32_t blocksize; /* bytes per block */
	uint64_t lun_blocks;
	uint64_t slots;     /* request-sized slots in the LUN (random) */
	uint64_t next_lba;  /* sequential cursor */
	unsigned char *data;

	uint64_t start_ns, end_ns, duration_ns, last_progress_ns;
	uint64_t done;      /* completions before the duration ended */
	int in_flight;
	int stopping;       /* duration over: queue nothing more */
	int failed;
	uint64_t rng;
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* xorshift64*: cheap, and independent of the C library's rand(). */
static uint64_t next_random(struct run *r)
{
	r->rng ^= r->rng >> 12;
	r->rng ^= r->rng << 25;
	r->rng ^= r->rng >> 27;
	return r->rng * 0x2545F4914F6CDD1DULL;
}

static void completed(struct iscsi_context *iscsi, int status, void *command_data, void *private_data);

/* submit queues one request; it returns -1 if libiscsi refused it. */
static int submit(struct run *r)
{
	uint64_t lba;
	struct scsi_task *task;

	if (r->random) {
		lba = (next_random(r) % r->slots) * r->blocks;
	} else {
		if (r->next_lba + r->blocks > r->lun_blocks)
			r->next_lba = 0;
		lba = r->next_lba;
		r->next_lba += r->blocks;
	}
	if (r->write)
		task = iscsi_write16_task(r->iscsi, r->lun, lba, r->data, r->blocks * r->blocksize,
					  r->blocksize, 0, 0, 0, 0, 0, completed, r);
	else
		task = iscsi_read16_task(r->iscsi, r->lun, lba, r->blocks * r->blocksize,
					 r->blocksize, 0, 0, 0, 0, 0, completed, r);
	if (task == NULL) {
		fprintf(stderr, "writeperf: queueing %s(16) at LBA %" PRIu64 ": %s\n",
			r->write ? "WRITE" : "READ", lba, iscsi_get_error(r->iscsi));
		r->failed = 1;
		return -1;
	}
	r->in_flight++;
	return 0;
}

static void completed(struct iscsi_context *iscsi, int status, void *command_data, void *private_data)
{
	struct run *r = private_data;
	struct scsi_task *task = command_data;
	uint64_t t = now_ns();

	r->in_flight--;
	r->last_progress_ns = t;
	if (status != SCSI_STATUS_GOOD) {
		if (status == SCSI_STATUS_CHECK_CONDITION && task != NULL)
			fprintf(stderr, "writeperf: %s(16) failed: CHECK CONDITION, sense key 0x%x, ASC/ASCQ 0x%04x\n",
				r->write ? "WRITE" : "READ", task->sense.key, task->sense.ascq);
		else
			fprintf(stderr, "writeperf: %s(16) failed: status 0x%x: %s\n",
				r->write ? "WRITE" : "READ", status, iscsi_get_error(iscsi));
		r->failed = 1;
		r->stopping = 1;
	}
	if (task != NULL)
		scsi_free_scsi_task(task);
	if (r->stopping)
		return;
	r->done++;
	if (t - r->start_ns >= r->duration_ns) {
		r->stopping = 1;
		r->end_ns = t;
		return;
	}
	submit(r);
}

static int capacity(struct run *r)
{
	struct scsi_task *task = iscsi_readcapacity16_sync(r->iscsi, r->lun);
	struct scsi_readcapacity16 *rc;

	if (task == NULL || task->status != SCSI_STATUS_GOOD) {
		fprintf(stderr, "writeperf: READ CAPACITY(16): %s\n", iscsi_get_error(r->iscsi));
		if (task != NULL)
			scsi_free_scsi_task(task);
		return -1;
	}
	rc = scsi_datain_unmarshall(task);
	if (rc == NULL || rc->block_length == 0) {
		fprintf(stderr, "writeperf: READ CAPACITY(16): undecodable answer\n");
		scsi_free_scsi_task(task);
		return -1;
	}
	r->blocksize = rc->block_length;
	r->lun_blocks = rc->returned_lba + 1;
	scsi_free_scsi_task(task);
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: writeperf [-o write|read] [-m in_flight] [-b blocks] [-t seconds] [-r] "
			"[-i initiator-iqn] iscsi://<host>[:<port>]/<target-iqn>/<lun>\n");
	exit(2);
}

int main(int argc, char *argv[])
{
	const char *initiator = "iqn.2026-11.org.lunboot:writeperf";
	struct iscsi_url *url;
	struct run r;
	int seconds = 10, c;

	memset(&r, 0, sizeof(r));
	r.write = 1;
	r.depth = 32;
	r.blocks = 256;
	while ((c = getopt(argc, argv, "o:m:b:t:ri:")) != -1) {
		switch (c) {
		case 'o':
			if (strcmp(optarg, "write") == 0)
				r.write = 1;
			else if (strcmp(optarg, "read") == 0)
				r.write = 0;
			else
				usage();
			break;
		case 'm':
			r.depth = atoi(optarg);
			break;
		case 'b':
			r.blocks = (uint32_t)strtoul(optarg, NULL, 10);
			break;
		case 't':
			seconds = atoi(optarg);
			break;
		case 'r':
			r.random = 1;
			break;
		case 'i':
			initiator = optarg;
			break;
		default:
			usage();
		}
	}
	if (optind != argc - 1 || r.depth < 1 || r.blocks < 1 || seconds < 1)
		usage();

	r.iscsi = iscsi_create_context(initiator);
	if (r.iscsi == NULL) {
		fprintf(stderr, "writeperf: cannot create a libiscsi context\n");
		return 1;
	}
	/*
	 * libiscsi's default is no timeout: the synchronous login, READ
	 * CAPACITY and logout would wait forever on a target that stopped
	 * answering. Fail every PDU unanswered for the stall limit instead.
	 */
	iscsi_set_timeout(r.iscsi, STALL_LIMIT_NS / 1000000000ULL);
	url = iscsi_parse_full_url(r.iscsi, argv[optind]);
	if (url == NULL) {
		fprintf(stderr, "writeperf: URL %s: %s\n", argv[optind], iscsi_get_error(r.iscsi));
		return 2;
	}
	iscsi_set_targetname(r.iscsi, url->target);
	iscsi_set_session_type(r.iscsi, ISCSI_SESSION_NORMAL);
	/* As iscsi-perf: offer None first, so no digests against tgtd. */
	iscsi_set_header_digest(r.iscsi, ISCSI_HEADER_DIGEST_NONE_CRC32C);
	if (iscsi_full_connect_sync(r.iscsi, url->portal, url->lun) != 0) {
		fprintf(stderr, "writeperf: login to %s: %s\n", url->portal, iscsi_get_error(r.iscsi));
		return 1;
	}
	r.lun = url->lun;
	iscsi_destroy_url(url);

	if (capacity(&r) != 0)
		return 1;
	if (r.blocks > r.lun_blocks) {
		fprintf(stderr, "writeperf: %u-block requests do not fit the %" PRIu64 "-block LUN\n",
			r.blocks, r.lun_blocks);
		return 2;
	}
	r.slots = r.lun_blocks / r.blocks;
	r.data = malloc((size_t)r.blocks * r.blocksize);
	if (r.data == NULL) {
		fprintf(stderr, "writeperf: out of memory\n");
		return 1;
	}
	r.rng = (uint64_t)now_ns() | 1;
	for (size_t i = 0; i < (size_t)r.blocks * r.blocksize; i++)
		r.data[i] = (unsigned char)next_random(&r);

	r.duration_ns = (uint64_t)seconds * 1000000000ULL;
	r.start_ns = r.last_progress_ns = now_ns();
	for (int i = 0; i < r.depth; i++)
		if (submit(&r) != 0)
			return 1;

	while (r.in_flight > 0) {
		struct pollfd pfd = {.fd = iscsi_get_fd(r.iscsi), .events = iscsi_which_events(r.iscsi)};
		int n = poll(&pfd, 1, 1000);

		if (n < 0 && errno != EINTR) {
			perror("writeperf: poll");
			return 1;
		}
		if (iscsi_service(r.iscsi, n > 0 ? pfd.revents : 0) < 0) {
			fprintf(stderr, "writeperf: connection: %s\n", iscsi_get_error(r.iscsi));
			return 1;
		}
		if (now_ns() - r.last_progress_ns > STALL_LIMIT_NS) {
			fprintf(stderr, "writeperf: no command completed for 30 s (%d in flight)\n", r.in_flight);
			return 1;
		}
	}
	if (r.failed)
		return 1;

	double secs = (double)(r.end_ns - r.start_ns) / 1e9;
	uint64_t bytes = r.done * r.blocks * r.blocksize;
	printf("writeperf: op=%s pattern=%s block=%" PRIu64 " depth=%d ops=%" PRIu64 " bytes=%" PRIu64
	       " seconds=%.3f iops=%.1f mb_per_s=%.1f\n",
	       r.write ? "write" : "read", r.random ? "rand" : "seq", (uint64_t)r.blocks * r.blocksize,
	       r.depth, r.done, bytes, secs, r.done / secs, bytes / secs / 1e6);
	fflush(stdout);
	iscsi_logout_sync(r.iscsi);
	iscsi_destroy_context(r.iscsi);
	free(r.data);
	return 0;
}
