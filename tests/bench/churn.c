/*
 * churn.c - the connection-churn client of the robustness benchmark (issue
 * 17, point 3; tests/bench/robust.sh, tests/bench/README.md).
 *
 * One process, one libevent loop. Against one katomon (its port, and its
 * pid to read /proc/PID/status and /proc/PID/fd), it runs CYCLES
 * connect/disconnect cycles of five kinds, chosen with a fixed seed:
 *
 *   clean   WebSocket upgrade, the 101, a masked close frame (1000), the
 *           server's close frame echoed, EOF: a well-behaved client;
 *   rst     upgrade, the 101, then close with SO_LINGER 0 (a RST);
 *   half    TCP connect, then half an HTTP upgrade (or nothing), then close;
 *   slow    slowloris: a request sent one byte per second, until the
 *           server cuts it ([http] request_timeout: 408); a bounded number
 *           at once (--slow);
 *   nofin   upgrade, the 101, then two bytes of a frame header and nothing
 *           more, until the server closes it (the frame deadline: 1008); a
 *           bounded number at once (--nofin).
 *
 * clean, rst and half run --inflight at once; slow and nofin keep their own
 * slots busy while those run. Before the churn, --burst sockets each send a
 * request line and hold (more than max_connections: the limit must answer
 * 503 and the ones let in are cut by request_timeout). Throughout, katomon's
 * open fds (/proc/PID/fd) and VmRSS are sampled every 50 ms, and a normal
 * client (GET /health on a fresh connection, every --probe-ms) measures
 * whether others are still served. Phases:
 *
 *   1. idle fds (fd0); warm-up: --warmup cycles of the same mix;
 *   2. the burst; 3. settle (fds back to fd0, deadline-polled), then the
 *      baseline VmRSS and fds; 4. churn; 5. settle (fds back to the
 *      baseline and VmRSS within 5 %, deadline-polled, --settle seconds at
 *      most), final VmRSS and fds.
 *
 * The result is one JSON object on stdout (or --out FILE).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#define BUF_MAX  8192 /* bytes of the server's answer kept per connection */
#define SAFETY_S 30   /* a cycle not over by then counts as stuck */
#define WS_UPGRADE                                                                       \
    "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"                      \
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"             \
    "Sec-WebSocket-Version: 13\r\n\r\n"
#define SLOW_REQ                                                                         \
    "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow-1: aaaaaaaaaaaaaaaa\r\n"          \
    "X-Slow-2: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\r\n\r\n"

enum kind { K_CLEAN, K_RST, K_HALF, K_SLOW, K_NOFIN, K_BURST, K_PROBE, K_N };
static const char *const kind_name[K_N] = {"clean", "rst",   "half", "slow",
                                           "nofin", "burst", "probe"};
enum phase { P_CONNECT, P_WAIT101, P_WAITCLOSE, P_WAITANSWER };

/* One connection of one cycle. */
struct cc {
    int fd;              /* the socket; -1 when free */
    enum kind kind;      /* what this cycle does */
    enum phase phase;    /* where it is */
    struct event *ev;    /* connect (write) then read event */
    struct event *tick;  /* slow: the next byte; every kind: the safety timeout */
    char buf[BUF_MAX];   /* the server's bytes (what fits) */
    size_t len;          /* bytes in buf */
    size_t slow_sent;    /* slow: request bytes sent */
    uint64_t skip;       /* bytes of a data frame still to drop on arrival */
    int got_close;       /* a close frame from the server was seen */
    unsigned close_code; /* its code */
    double t0;           /* when the cycle began (monotonic s) */
    int pool;            /* which pool restarts this slot: 0 fast, 1 slow, 2 nofin,
                            -1 none */
};

/* Per-kind outcome counters. */
struct counts {
    uint64_t started; /* cycles begun */
    uint64_t ok;      /* ended as the server should end them */
    uint64_t http503; /* refused by max_connections */
    uint64_t http408; /* cut by request_timeout */
    uint64_t ws1008;  /* closed with 1008 (frame deadline) */
    uint64_t failed;  /* connect error, unexpected answer or EOF */
    uint64_t stuck;   /* not over after SAFETY_S */
    double dur_sum;   /* seconds, summed over the ended cycles */
    double dur_max;   /* longest */
};

static struct {
    /* options */
    int port, pid;
    long cycles, warmup, burst;
    int inflight, slow, nofin;
    int probe_ms;
    double settle;
    unsigned seed;
    int limit; /* max_connections, for the report only */
    const char *out;
    /* state */
    struct event_base *base;
    struct cc *c;
    int n_slots;
    long budget;    /* cycles still to start in this phase */
    long fast_left; /* fast cycles still to start */
    int running;    /* connections open now */
    uint64_t ended; /* cycles ended (every kind) */
    int churning;   /* the slow pools restart only while 1 */
    struct counts k[K_N];
    /* sampling */
    struct event *sample_ev, *probe_ev;
    int sampling;
    long fd_max, fd_min_churn, rss_max;
    uint64_t samples;
    /* probe */
    int probe_on;
    struct cc probe;
    double *plat;
    size_t n_plat, cap_plat;
    /* results */
    long fd0, rss0, fd_base, rss_base, fd_end, rss_end, fd_burst_max;
    double settle_base_s, settle_end_s, churn_s, burst_s;
    int settled;
} g;

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "churn: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

/* Park-Miller-free xorshift: the mix is the same for a given --seed. */
static uint32_t rnd(void)
{
    static uint32_t x;
    if (!x)
        x = g.seed ? g.seed : 17;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return x;
}

/* ---- /proc ---- */

static long proc_rss(int pid)
{
    char path[64], line[256];
    long kib = -1;
    FILE *f;

    snprintf(path, sizeof path, "/proc/%d/status", pid);
    if (!(f = fopen(path, "re")))
        return -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) {
            kib = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kib;
}

static long proc_fds(int pid)
{
    char path[64];
    long n = 0;
    DIR *d;
    struct dirent *e;

    snprintf(path, sizeof path, "/proc/%d/fd", pid);
    if (!(d = opendir(path)))
        return -1;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

static void sample_cb(evutil_socket_t fd, short what, void *arg)
{
    long f = proc_fds(g.pid), r = proc_rss(g.pid);

    if (f < 0)
        die("katomon (pid %d) is gone", g.pid);
    g.samples++;
    if (f > g.fd_max)
        g.fd_max = f;
    if (r > g.rss_max)
        g.rss_max = r;
}

/* ---- connections ---- */

static void cycle_start(struct cc *c, enum kind kind, int pool);
static void on_read(evutil_socket_t fd, short what, void *arg);

static void pool_restart(struct cc *c)
{
    int pool = c->pool;

    if (pool == 0 && g.budget > 0) {
        /* the fast mix: 40 % clean, 30 % rst, 30 % half */
        uint32_t r = rnd() % 10;
        g.budget--;
        cycle_start(c, r < 4 ? K_CLEAN : r < 7 ? K_RST : K_HALF, 0);
    } else if ((pool == 1 || pool == 2) && g.churning && g.budget > 0) {
        g.budget--;
        cycle_start(c, pool == 1 ? K_SLOW : K_NOFIN, pool);
    }
}

static void restart_cb(evutil_socket_t fd, short what, void *arg)
{
    pool_restart(arg);
}

/* Ends c's cycle with one outcome (a field of struct counts). */
static void cycle_end(struct cc *c, uint64_t *outcome, int rst)
{
    struct counts *k = &g.k[c->kind];
    double d = mono_s() - c->t0;

    (*outcome)++;
    k->dur_sum += d;
    if (d > k->dur_max)
        k->dur_max = d;
    if (c->ev) {
        event_free(c->ev);
        c->ev = NULL;
    }
    if (c->tick) {
        event_free(c->tick);
        c->tick = NULL;
    }
    if (c->fd >= 0) {
        if (rst) {
            struct linger lg = {1, 0};
            setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        }
        close(c->fd);
        g.running--;
    }
    c->fd = -1;
    g.ended++;
    if (c->kind == K_PROBE) {
        if (outcome == &k->ok) {
            if (g.n_plat == g.cap_plat) {
                g.cap_plat = g.cap_plat ? g.cap_plat * 2 : 4096;
                g.plat = realloc(g.plat, g.cap_plat * sizeof *g.plat);
                if (!g.plat)
                    die("out of memory");
            }
            g.plat[g.n_plat++] = d;
        }
        return;
    }
    /* the next cycle of this slot starts from the loop, not from inside this
       one's callbacks (a connect failing at once would recurse) */
    if (c->pool >= 0)
        event_base_once(g.base, -1, EV_TIMEOUT, restart_cb, c, NULL);
}

static int sendall(int fd, const void *p, size_t n)
{
    return send(fd, p, n, MSG_NOSIGNAL) == (ssize_t)n ? 0 : -1;
}

/* A masked client frame (mask 0: cheap and legal), payload <= 125. */
static int send_frame(struct cc *c, int op, const void *payload, size_t len)
{
    unsigned char f[6 + 125];
    f[0] = (unsigned char)(0x80 | op);
    f[1] = (unsigned char)(0x80 | len);
    memset(f + 2, 0, 4);
    memcpy(f + 6, payload, len);
    return sendall(c->fd, f, 6 + len);
}

/* Consumes the whole frames after the 101 in buf (realtime_update ticks
   come too), noting a close frame; a frame's rest stays in buf. */
static void scan_frames(struct cc *c)
{
    size_t off = 0;

    while (!c->got_close && off + 2 <= c->len) {
        uint64_t n = (unsigned char)c->buf[off + 1] & 0x7f;
        size_t h = 2;
        if (n == 126) {
            if (off + 4 > c->len)
                break;
            n = (uint64_t)(unsigned char)c->buf[off + 2] << 8 |
                (unsigned char)c->buf[off + 3];
            h = 4;
        } else if (n == 127) {
            if (off + 10 > c->len)
                break;
            n = 0;
            for (int i = 0; i < 8; i++)
                n = n << 8 | (unsigned char)c->buf[off + 2 + i];
            h = 10;
        }
        if ((c->buf[off] & 0x0f) == 0x8) {
            if (off + h + n > c->len)
                break; /* the close frame's payload is still to come */
            c->got_close = 1;
            if (n >= 2)
                c->close_code = (unsigned)(unsigned char)c->buf[off + h] << 8 |
                                (unsigned char)c->buf[off + h + 1];
        }
        if (off + h + n > c->len) {
            /* a data frame not all here: forget what we have of it */
            c->skip = off + h + n - c->len;
            off = c->len;
            break;
        }
        off += h + n;
    }
    memmove(c->buf, c->buf + off, c->len - off);
    c->len -= off;
}

/* Frames from the server after the 101: kept in buf only until whole
   (scan_frames consumes them); a data frame too large for buf is skipped. */
static void feed(struct cc *c, const char *p, size_t m)
{
    while (m > 0 && !c->got_close) {
        size_t take;
        if (c->skip) {
            size_t d = c->skip < m ? (size_t)c->skip : m;
            c->skip -= d;
            p += d;
            m -= d;
            continue;
        }
        take = m < BUF_MAX - c->len ? m : BUF_MAX - c->len;
        memcpy(c->buf + c->len, p, take);
        c->len += take;
        p += take;
        m -= take;
        scan_frames(c);
        if (c->len == BUF_MAX) /* a frame over 8 KiB: never in this scenario */
            c->len = 0;
    }
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct cc *c = arg;
    struct timeval one = {1, 0};

    if (mono_s() - c->t0 > SAFETY_S) {
        cycle_end(c, &g.k[c->kind].stuck, 0);
        return;
    }
    if (c->kind == K_SLOW && c->phase == P_WAITANSWER &&
        c->slow_sent < sizeof SLOW_REQ - 1) {
        if (send(c->fd, SLOW_REQ + c->slow_sent, 1, MSG_NOSIGNAL) == 1)
            c->slow_sent++;
    }
    evtimer_add(c->tick, &one);
}

static void on_connected(evutil_socket_t fd, short what, void *arg)
{
    struct cc *c = arg;
    int err = 0, rc = 0;
    socklen_t len = sizeof err;
    struct timeval one = {1, 0};

    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
        cycle_end(c, &g.k[c->kind].failed, 0);
        return;
    }
    switch (c->kind) {
    case K_CLEAN:
    case K_RST:
    case K_NOFIN:
        rc = sendall(fd, WS_UPGRADE, sizeof WS_UPGRADE - 1);
        c->phase = P_WAIT101;
        break;
    case K_HALF: {
        /* half an upgrade request (a random cut), or nothing at all */
        size_t cut = rnd() % (sizeof WS_UPGRADE - 2);
        if (cut)
            (void)sendall(fd, WS_UPGRADE, cut);
        cycle_end(c, &g.k[K_HALF].ok, 0);
        return;
    }
    case K_SLOW:
        rc = sendall(fd, SLOW_REQ, 1);
        c->slow_sent = 1;
        c->phase = P_WAITANSWER;
        break;
    case K_BURST:
        rc = sendall(fd, "GET /health HTTP/1.1\r\n", 22);
        c->phase = P_WAITANSWER;
        break;
    case K_PROBE: {
        static const char req[] =
            "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
        rc = sendall(fd, req, sizeof req - 1);
    }
        c->phase = P_WAITANSWER;
        break;
    default:
        break;
    }
    if (rc != 0) {
        cycle_end(c, &g.k[c->kind].failed, 0);
        return;
    }
    event_free(c->ev);
    c->ev = event_new(g.base, fd, EV_READ | EV_PERSIST, on_read, c);
    event_add(c->ev, NULL);
    c->tick = evtimer_new(g.base, on_tick, c);
    evtimer_add(c->tick, &one);
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    struct cc *c = arg;
    struct counts *k = &g.k[c->kind];
    char tmp[16384];
    /* before the 101 (and for HTTP answers) read straight into buf, never
       more than fits; after it, frames go through feed() */
    int direct = c->phase != P_WAITCLOSE;
    ssize_t n =
        direct ? (c->len < BUF_MAX ? recv(fd, c->buf + c->len, BUF_MAX - c->len, 0) : -2)
               : recv(fd, tmp, sizeof tmp, 0);
    int eof = n == 0 || (n == -2) || (n < 0 && errno != EAGAIN && errno != EINTR);

    if (n == -1 && !eof)
        return;
    if (n > 0 && direct)
        c->len += (size_t)n;
    else if (n > 0)
        feed(c, tmp, (size_t)n);
    if (c->phase == P_WAIT101) {
        char *e = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (!e) {
            if (eof)
                cycle_end(c, &k->failed, 0);
            return;
        }
        if (!strncmp(c->buf, "HTTP/1.1 503", 12)) {
            cycle_end(c, &k->http503, 0);
            return;
        }
        if (strncmp(c->buf, "HTTP/1.1 101", 12) != 0) {
            cycle_end(c, &k->failed, 0);
            return;
        }
        size_t off = (size_t)(e - c->buf) + 4;
        memmove(c->buf, c->buf + off, c->len - off);
        c->len -= off;
        if (c->kind == K_RST) {
            cycle_end(c, &k->ok, 1);
            return;
        }
        if (c->kind == K_CLEAN) {
            static const unsigned char code[2] = {0x03, 0xe8}; /* 1000 */
            if (send_frame(c, 0x8, code, 2) != 0) {
                cycle_end(c, &k->failed, 0);
                return;
            }
        } else if (sendall(fd, "\x81\xfd", 2) != 0) { /* nofin: a header, half */
            cycle_end(c, &k->failed, 0);
            return;
        }
        c->phase = P_WAITCLOSE;
    }
    if (c->phase == P_WAITCLOSE) {
        scan_frames(c);
        if (!eof)
            return;
        if (c->kind == K_NOFIN)
            cycle_end(c, c->got_close && c->close_code == 1008 ? &k->ws1008 : &k->failed,
                      0);
        else
            cycle_end(c, c->got_close && c->close_code == 1000 ? &k->ok : &k->failed, 0);
        return;
    }
    /* P_WAITANSWER: an HTTP answer, then EOF (slow, burst, probe) */
    if (!eof && c->kind != K_PROBE)
        return;
    if (c->kind == K_PROBE && !(c->len >= 12 && memmem(c->buf, c->len, "\r\n\r\n", 4) &&
                                (eof || !strncmp(c->buf, "HTTP/1.1 200", 12)))) {
        if (eof)
            cycle_end(c, &k->failed, 0);
        return;
    }
    if (c->len >= 12 && !strncmp(c->buf, "HTTP/1.1 408", 12))
        cycle_end(c, &k->http408, 0);
    else if (c->len >= 12 && !strncmp(c->buf, "HTTP/1.1 503", 12))
        cycle_end(c, &k->http503, 0);
    else if (c->len >= 12 && !strncmp(c->buf, "HTTP/1.1 200", 12) && c->kind == K_PROBE)
        cycle_end(c, &k->ok, 0);
    else
        cycle_end(c, &k->failed, 0);
}

static void cycle_start(struct cc *c, enum kind kind, int pool)
{
    struct sockaddr_in dst;
    int fd, one = 1;

    memset(c, 0, sizeof *c);
    c->kind = kind;
    c->pool = pool;
    c->t0 = mono_s();
    c->fd = -1;
    g.k[kind].started++;
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket: %s", strerror(errno));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    memset(&dst, 0, sizeof dst);
    dst.sin_family = AF_INET;
    dst.sin_port = htons((uint16_t)g.port);
    dst.sin_addr.s_addr = htonl(0x7f000001u);
    {
        /* 16 source addresses: 100,000 cycles in a minute would otherwise
           lean on one address's ephemeral ports (and TIME_WAIT) */
        struct sockaddr_in src;
        memset(&src, 0, sizeof src);
        src.sin_family = AF_INET;
        src.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)(g.k[kind].started % 16));
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        (void)bind(fd, (struct sockaddr *)&src, sizeof src);
    }
    c->fd = fd;
    g.running++;
    c->phase = P_CONNECT;
    if (connect(fd, (struct sockaddr *)&dst, sizeof dst) < 0 && errno != EINPROGRESS) {
        if (g.k[kind].failed < 5)
            fprintf(stderr, "churn: connect: %s\n", strerror(errno));
        cycle_end(c, &g.k[kind].failed, 0);
        return;
    }
    c->ev = event_new(g.base, fd, EV_WRITE, on_connected, c);
    event_add(c->ev, NULL);
}

static void probe_cb(evutil_socket_t fd, short what, void *arg)
{
    if (g.probe_on && g.probe.fd < 0)
        cycle_start(&g.probe, K_PROBE, -1);
}

/* ---- phases ---- */

static void loop_until(int (*done)(void), double max_s)
{
    double end = mono_s() + max_s;
    while (!done() && mono_s() < end)
        event_base_loop(g.base, EVLOOP_ONCE);
}

static int idle_now(void)
{
    return g.running == 0 || (g.probe_on && g.running == 1 && g.probe.fd >= 0);
}

static int cycles_over(void)
{
    return g.budget <= 0 && idle_now();
}

static void noop_cb(evutil_socket_t fd, short what, void *arg) {}

/* Polls katomon's fds (every 100 ms) until they are at most `fds` and, when
   rss_kib > 0, VmRSS at most rss_kib; max_s at most. Returns seconds taken
   (-1: the deadline passed). */
static double settle_to(long fds, long rss_kib, double max_s)
{
    double t0 = mono_s();
    while (mono_s() - t0 < max_s) {
        long f = proc_fds(g.pid), r = proc_rss(g.pid);
        if (f >= 0 && f <= fds && (rss_kib <= 0 || r <= rss_kib))
            return mono_s() - t0;
        struct timeval tv = {0, 100000};
        struct event *t = evtimer_new(g.base, noop_cb, NULL);
        evtimer_add(t, &tv);
        event_base_loop(g.base, EVLOOP_ONCE);
        event_free(t);
    }
    return -1;
}

/* Starts every slot of the pools (fast: inflight, slow, nofin). */
static void start_pools(int with_slow)
{
    int i = 0;
    for (; i < g.inflight && g.budget > 0; i++) {
        g.c[i].pool = 0;
        pool_restart(&g.c[i]);
    }
    if (!with_slow)
        return;
    for (int j = 0; j < g.slow && g.budget > 0; j++, i++) {
        g.c[i].pool = 1;
        pool_restart(&g.c[i]);
    }
    for (int j = 0; j < g.nofin && g.budget > 0; j++, i++) {
        g.c[i].pool = 2;
        pool_restart(&g.c[i]);
    }
}

static int burst_over(void)
{
    return g.running == 0;
}

/* ---- results ---- */

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void print_results(FILE *f)
{
    uint64_t total = 0;
    qsort(g.plat, g.n_plat, sizeof *g.plat, cmp_d);
    for (int i = 0; i < K_BURST; i++)
        total += g.k[i].started;
    fprintf(f,
            "{\"label\":\"churn\",\"cycles\":%llu,\"seed\":%u,\"inflight\":%d,"
            "\"slow\":%d,\"nofin\":%d,\"limit\":%d,\"churn_s\":%.2f,\"burst_s\":%.2f,",
            (unsigned long long)total, g.seed, g.inflight, g.slow, g.nofin, g.limit,
            g.churn_s, g.burst_s);
    fprintf(f,
            "\"fd0\":%ld,\"rss0_kib\":%ld,\"fd_base\":%ld,\"rss_base_kib\":%ld,"
            "\"fd_end\":%ld,\"rss_end_kib\":%ld,\"fd_max\":%ld,\"fd_burst_max\":%ld,"
            "\"rss_max_kib\":%ld,\"samples\":%llu,\"settle_base_s\":%.2f,"
            "\"settle_end_s\":%.2f,",
            g.fd0, g.rss0, g.fd_base, g.rss_base, g.fd_end, g.rss_end, g.fd_max,
            g.fd_burst_max, g.rss_max, (unsigned long long)g.samples, g.settle_base_s,
            g.settle_end_s);
    fprintf(
        f,
        "\"probe_ok\":%llu,\"probe_failed\":%llu,\"probe_503\":%llu,"
        "\"probe_p50_ms\":%.2f,\"probe_p99_ms\":%.2f,\"probe_max_ms\":%.2f,\"kinds\":{",
        (unsigned long long)g.k[K_PROBE].ok, (unsigned long long)g.k[K_PROBE].failed,
        (unsigned long long)g.k[K_PROBE].http503,
        g.n_plat ? g.plat[(size_t)(0.5 * (double)(g.n_plat - 1))] * 1e3 : -1,
        g.n_plat ? g.plat[(size_t)(0.99 * (double)(g.n_plat - 1) + 0.5)] * 1e3 : -1,
        g.n_plat ? g.plat[g.n_plat - 1] * 1e3 : -1);
    for (int i = 0; i < K_N; i++) {
        struct counts *k = &g.k[i];
        uint64_t ended =
            k->ok + k->http503 + k->http408 + k->ws1008 + k->failed + k->stuck;
        fprintf(f,
                "%s\"%s\":{\"started\":%llu,\"ok\":%llu,\"503\":%llu,\"408\":%llu,"
                "\"1008\":%llu,\"failed\":%llu,\"stuck\":%llu,\"mean_s\":%.3f,\"max_s\":%"
                ".3f}",
                i ? "," : "", kind_name[i], (unsigned long long)k->started,
                (unsigned long long)k->ok, (unsigned long long)k->http503,
                (unsigned long long)k->http408, (unsigned long long)k->ws1008,
                (unsigned long long)k->failed, (unsigned long long)k->stuck,
                ended ? k->dur_sum / (double)ended : 0, k->dur_max);
    }
    fprintf(f, "}}\n");
}

static void usage(void)
{
    fprintf(stderr,
            "usage: churn -p PORT --pid PID [--cycles N] [--warmup N] [--inflight K]\n"
            "  [--slow K] [--nofin K] [--burst K] [--probe-ms MS] [--settle S]\n"
            "  [--limit N] [--seed N] [--out FILE]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"port", 1, 0, 'p'},     {"pid", 1, 0, 'P'},
                                         {"cycles", 1, 0, 'n'},   {"warmup", 1, 0, 'w'},
                                         {"inflight", 1, 0, 'i'}, {"slow", 1, 0, 's'},
                                         {"nofin", 1, 0, 'f'},    {"burst", 1, 0, 'b'},
                                         {"probe-ms", 1, 0, 'm'}, {"settle", 1, 0, 'S'},
                                         {"limit", 1, 0, 'l'},    {"seed", 1, 0, 'r'},
                                         {"out", 1, 0, 'o'},      {0, 0, 0, 0}};
    struct rlimit rl;
    int o;

    g.cycles = 100000;
    g.warmup = 10000;
    g.inflight = 100;
    g.slow = 20;
    g.nofin = 20;
    g.burst = 300;
    g.probe_ms = 50;
    g.settle = 30;
    g.seed = 17;
    while ((o = getopt_long(argc, argv, "p:", opts, NULL)) != -1) {
        switch (o) {
        case 'p':
            g.port = atoi(optarg);
            break;
        case 'P':
            g.pid = atoi(optarg);
            break;
        case 'n':
            g.cycles = atol(optarg);
            break;
        case 'w':
            g.warmup = atol(optarg);
            break;
        case 'i':
            g.inflight = atoi(optarg);
            break;
        case 's':
            g.slow = atoi(optarg);
            break;
        case 'f':
            g.nofin = atoi(optarg);
            break;
        case 'b':
            g.burst = atol(optarg);
            break;
        case 'm':
            g.probe_ms = atoi(optarg);
            break;
        case 'S':
            g.settle = atof(optarg);
            break;
        case 'l':
            g.limit = atoi(optarg);
            break;
        case 'r':
            g.seed = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'o':
            g.out = optarg;
            break;
        default:
            usage();
        }
    }
    if (g.port <= 0 || g.pid <= 0 || g.inflight < 1)
        usage();
    signal(SIGPIPE, SIG_IGN);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    g.n_slots = g.inflight + g.slow + g.nofin;
    if (g.burst > g.n_slots)
        g.n_slots = (int)g.burst;
    if (!(g.c = calloc((size_t)g.n_slots, sizeof *g.c)))
        die("out of memory");
    for (int i = 0; i < g.n_slots; i++)
        g.c[i].fd = -1;
    g.probe.fd = -1;
    if (!(g.base = event_base_new()))
        die("event_base_new failed");
    {
        struct timeval tv = {0, 50000}, pv = {0, g.probe_ms * 1000};
        g.sample_ev = event_new(g.base, -1, EV_PERSIST, sample_cb, NULL);
        g.probe_ev = event_new(g.base, -1, EV_PERSIST, probe_cb, NULL);
        evtimer_add(g.sample_ev, &tv);
        evtimer_add(g.probe_ev, &pv);
    }

    /* 1. idle fds; warm-up: the churn's own mix (every kind, the slow
       pools too), so that the baseline already holds the heap's high-water
       mark (glibc keeps freed memory for reuse): what is measured after the
       churn is then growth, not the first use of memory */
    g.fd0 = proc_fds(g.pid);
    g.rss0 = proc_rss(g.pid);
    g.budget = g.warmup;
    g.churning = 1;
    start_pools(1);
    loop_until(cycles_over, 600);
    g.churning = 0;

    /* 2. burst: more request lines held open than max_connections */
    if (g.burst > 0) {
        double t0 = mono_s();
        g.fd_max = 0;
        for (long i = 0; i < g.burst; i++)
            cycle_start(&g.c[i], K_BURST, -1);
        loop_until(burst_over, 120);
        g.burst_s = mono_s() - t0;
        g.fd_burst_max = g.fd_max;
    }

    /* 3. settle: fds back to idle; then the baseline */
    g.settle_base_s = settle_to(g.fd0, 0, g.settle);
    g.fd_base = proc_fds(g.pid);
    g.rss_base = proc_rss(g.pid);
    fprintf(stderr, "churn: baseline fds %ld (idle %ld), VmRSS %ld KiB (idle %ld)\n",
            g.fd_base, g.fd0, g.rss_base, g.rss0);

    /* 4. churn, with the normal client probing */
    {
        double t0 = mono_s();
        g.fd_max = 0;
        g.rss_max = 0;
        for (int i = 0; i < K_BURST; i++) /* the figures are the churn's */
            memset(&g.k[i], 0, sizeof g.k[i]);
        g.probe_on = 1;
        g.churning = 1;
        g.budget = g.cycles;
        start_pools(1);
        loop_until(cycles_over, 3600);
        g.churning = 0;
        g.probe_on = 0;
        loop_until(idle_now, 60);
        while (g.probe.fd >= 0)
            event_base_loop(g.base, EVLOOP_ONCE);
        g.churn_s = mono_s() - t0;
    }

    /* 5. settle: fds back to the baseline and VmRSS within 5 % of it */
    g.settle_end_s = settle_to(g.fd_base, g.rss_base + g.rss_base / 20, g.settle);
    g.fd_end = proc_fds(g.pid);
    g.rss_end = proc_rss(g.pid);
    fprintf(stderr, "churn: after %.1f s: fds %ld, VmRSS %ld KiB (settled in %.2f s)\n",
            g.churn_s, g.fd_end, g.rss_end, g.settle_end_s);

    if (g.out) {
        FILE *f = fopen(g.out, "w");
        if (!f)
            die("%s: %s", g.out, strerror(errno));
        print_results(f);
        fclose(f);
    } else {
        print_results(stdout);
    }
    return 0;
}
