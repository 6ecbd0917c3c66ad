/*
 * bench_client.c - the load client of the fan-out benchmark (issue 6).
 *
 * One process, one libevent loop, up to 20,000 WebSocket connections to one
 * server (katomon, a peer or the floor: the same binary for all of them).
 * It raises its own fd limit, connects N clients (a bounded number of
 * handshakes in flight), optionally subscribes each (a fixed list, or a
 * random subset of a list), lets the run warm up, then measures a window:
 *
 *   - every message received in the window: payload bytes, and two
 *     latencies read from the message's first bytes (no JSON parse):
 *       latency  now(CLOCK_REALTIME) - the envelope's "timestamp" (µs, UTC
 *                ISO 8601): the moment the server built the message it
 *                broadcasts (katomon: the realtime_update tick, or the
 *                event's publish; peers and floor: their publish);
 *       age      now(CLOCK_MONOTONIC) - the first "t" field (µs): when the
 *                publisher produced the data (katomon: bench_pub's publish,
 *                before the update_interval tick that carries it);
 *     and per-connection "seq" gaps (messages the server skipped);
 *   - the server's CPU (utime + stime of /proc/PID/stat, all threads)
 *     across the window, and its RSS (/proc/PID/status VmRSS) before any
 *     client connected, at the window's start, end, and its maximum;
 *   - with --km-stats, katomon's transport counters (GET
 *     /api/v1/ws/subscriptions) just before and after the window.
 *
 * Frames are parsed here by hand (header, then only the payload's first
 * PREFIX bytes are kept), so the client costs little per message and a
 * few hundred bytes per connection. Server pings are answered; a close
 * from the server is counted and the connection dropped.
 *
 * The result is one JSON object on stdout (or --out FILE).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#define PREFIX     200 /* payload bytes kept per message: the stamps are in there */
#define READ_CHUNK (256 * 1024)
#define MAX_TOPICS 64
#define WS_KEY     "dGhlIHNhbXBsZSBub25jZQ=="

enum cstate { C_IDLE, C_CONNECTING, C_HANDSHAKE, C_OPEN, C_DEAD };

struct conn {
    int fd;
    int idx;
    enum cstate st;
    int stalled;      /* never reads after the handshake (scenario S5) */
    struct event *ev; /* read (and connect) event */
    /* handshake response (only while C_HANDSHAKE) */
    char *resp;
    size_t resp_len;
    /* frame parser */
    unsigned char hdr[14];
    unsigned hdr_len;  /* header bytes in hdr */
    unsigned hdr_need; /* header bytes needed (2 until the length byte is seen) */
    uint64_t left;     /* payload bytes left of the current frame */
    uint64_t plen;     /* its payload length */
    int op;
    unsigned char pre[PREFIX];
    unsigned pre_len;
    long long last_seq; /* of the last data message; -1: none */
    uint16_t local_port;
};

static struct {
    /* options */
    const char *host;
    int port;
    const char *path;
    int n;
    int n_src;
    int inflight_max;
    const char *sub; /* comma list, or NULL */
    int sub_random;  /* > 0: each subscribes to this many random topics of sub */
    const char *proto; /* subscribe's "protocol" ("katomon/1"), or NULL: none */
    int stall;       /* connections that never read */
    double warmup, duration;
    int pid;
    int km_stats;
    int idle;      /* S4: no message window, RSS only */
    double settle; /* idle: seconds between the last connect and the RSS read */
    const char *out;
    const char *label;
    unsigned seed;
    /* state */
    struct event_base *base;
    struct conn *c;
    int next_to_start;
    int inflight;
    int n_open, n_failed, n_closed_by_server;
    char *topics[MAX_TOPICS];
    int n_topics;
    /* window */
    int in_window;
    struct timespec now_mono, now_real;
    int64_t now_mono_us, now_real_us;
    uint64_t msgs, bytes, msgs_stalled, gaps, ctrl_frames, pings;
    uint64_t msgs_total;             /* data messages ever (any time, any client) */
    uint64_t span_msgs0, span_msgs1; /* msgs_total at the two stats requests */
    int32_t *lat;
    size_t n_lat, cap_lat;
    int32_t *age;
    size_t n_age, cap_age;
    uint64_t no_stamp;
    int64_t probe_max_us;  /* largest lateness of the 5 ms probe timer in the window */
    uint64_t probe_late20; /* probe fires more than 20 ms late */
    /* server */
    double cpu0, cpu1; /* /proc/PID/stat utime + stime */
    double sch0, sch1; /* schedstat sum */
    long rss_base, rss0, rss1, rss_max;
    double t_connect;
    double window_real;
    struct rusage ru0, ru1;
    /* iso date cache */
    char day_key[11];
    int64_t day_us;
    /* katomon stats */
    char *stats_before, *stats_after;
    /* memcount.so counters (large calls, large bytes, small calls, small bytes) */
    const char *memcount;
    uint64_t mc0[4], mc1[4];
} g;

static void read_memcount(uint64_t out[4])
{
    FILE *f;
    if (!g.memcount || !(f = fopen(g.memcount, "re")))
        return;
    if (fread(out, sizeof *out, 4, f) != 4)
        memset(out, 0, 4 * sizeof *out);
    fclose(f);
}

/* ---- small helpers ---- */

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
#include <stdarg.h>
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bench_client: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void update_now(void)
{
    clock_gettime(CLOCK_MONOTONIC, &g.now_mono);
    clock_gettime(CLOCK_REALTIME, &g.now_real);
    g.now_mono_us = (int64_t)g.now_mono.tv_sec * 1000000 + g.now_mono.tv_nsec / 1000;
    g.now_real_us = (int64_t)g.now_real.tv_sec * 1000000 + g.now_real.tv_nsec / 1000;
}

/* utime + stime of pid, seconds (all threads). */
static double proc_cpu(int pid)
{
    char path[64], buf[2048];
    FILE *f;
    size_t n;
    char *p;
    unsigned long ut = 0, st = 0;

    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    if (!(f = fopen(path, "re")))
        return -1;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* fields after the ")" of comm: state(3) ... utime(14) stime(15) */
    if (!(p = strrchr(buf, ')')))
        return -1;
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) !=
        2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* Time on CPU of every thread of pid, seconds, from /proc/PID/task/TID/schedstat
   (ns precision; /proc/PID/stat counts clock ticks). */
static double proc_sched(int pid)
{
    char path[64];
    double sum = 0;
    DIR *d;
    struct dirent *e;

    snprintf(path, sizeof path, "/proc/%d/task", pid);
    if (!(d = opendir(path)))
        return -1;
    while ((e = readdir(d))) {
        char p2[300];
        unsigned long long ns;
        FILE *f;
        if (e->d_name[0] == '.')
            continue;
        snprintf(p2, sizeof p2, "/proc/%d/task/%s/schedstat", pid, e->d_name);
        if ((f = fopen(p2, "re"))) {
            if (fscanf(f, "%llu", &ns) == 1)
                sum += (double)ns / 1e9;
            fclose(f);
        }
    }
    closedir(d);
    return sum;
}

/* VmRSS of pid, KiB. */
static long proc_rss(int pid)
{
    char path[64], line[256];
    FILE *f;
    long kb = -1;

    snprintf(path, sizeof path, "/proc/%d/status", pid);
    if (!(f = fopen(path, "re")))
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

static void push(int32_t **a, size_t *n, size_t *cap, int64_t v)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 65536;
        if (!(*a = realloc(*a, *cap * sizeof **a)))
            die("out of memory");
    }
    if (v > INT32_MAX)
        v = INT32_MAX;
    if (v < INT32_MIN)
        v = INT32_MIN;
    (*a)[(*n)++] = (int32_t)v;
}

/* "YYYY-MM-DDTHH:MM:SS.ffffffZ" -> µs since the epoch; -1 if malformed. */
static int64_t iso_us(const char *s, size_t len)
{
    int hh, mm, ss;
    long frac = 0;
    int nd = 0;

    if (len < 20 || s[4] != '-' || s[10] != 'T')
        return -1;
    if (memcmp(s, g.day_key, 10) != 0) {
        struct tm tm;
        memset(&tm, 0, sizeof tm);
        if (sscanf(s, "%4d-%2d-%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday) != 3)
            return -1;
        tm.tm_year -= 1900;
        tm.tm_mon -= 1;
        g.day_us = (int64_t)timegm(&tm) * 1000000;
        memcpy(g.day_key, s, 10);
    }
    hh = (s[11] - '0') * 10 + (s[12] - '0');
    mm = (s[14] - '0') * 10 + (s[15] - '0');
    ss = (s[17] - '0') * 10 + (s[18] - '0');
    if (s[19] == '.') {
        for (size_t i = 20; i < len && s[i] >= '0' && s[i] <= '9'; i++, nd++)
            frac = frac * 10 + (s[i] - '0');
        while (nd < 6)
            frac *= 10, nd++;
        while (nd > 6)
            frac /= 10, nd--;
    }
    return g.day_us + ((int64_t)hh * 3600 + mm * 60 + ss) * 1000000 + frac;
}

static const unsigned char *find(const unsigned char *h, size_t hl, const char *n)
{
    return memmem(h, hl, n, strlen(n));
}

static long long num_after(const unsigned char *p, const unsigned char *end)
{
    long long v = 0;
    int any = 0;
    while (p < end && *p >= '0' && *p <= '9')
        v = v * 10 + (*p++ - '0'), any = 1;
    return any ? v : -1;
}

/* ---- sending (client frames are masked; mask 0 keeps it cheap and legal) ---- */

static void send_frame(struct conn *c, int op, const void *data, size_t len)
{
    unsigned char buf[4096];
    size_t h = 0;

    if (len > sizeof buf - 8)
        return;
    buf[h++] = (unsigned char)(0x80 | op);
    if (len < 126) {
        buf[h++] = (unsigned char)(0x80 | len);
    } else {
        buf[h++] = 0x80 | 126;
        buf[h++] = (unsigned char)(len >> 8);
        buf[h++] = (unsigned char)len;
    }
    memset(buf + h, 0, 4); /* masking key 0: payload unchanged */
    h += 4;
    memcpy(buf + h, data, len);
    if (send(c->fd, buf, h + len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 && errno != EAGAIN)
        return;
}

static void send_subscribe(struct conn *c)
{
    char msg[2048];
    size_t n;

    if (!g.sub)
        return;
    n = (size_t)snprintf(msg, sizeof msg, "{\"type\":\"subscribe\",\"subscriptions\":[");
    if (g.sub_random > 0) {
        int pick[MAX_TOPICS], k = g.sub_random < g.n_topics ? g.sub_random : g.n_topics;
        for (int i = 0; i < g.n_topics; i++)
            pick[i] = i;
        for (int i = 0; i < k; i++) { /* partial Fisher-Yates */
            int j = i + (int)(rand_r(&g.seed) % (unsigned)(g.n_topics - i));
            int t = pick[i];
            pick[i] = pick[j];
            pick[j] = t;
        }
        for (int i = 0; i < k; i++)
            n += (size_t)snprintf(msg + n, sizeof msg - n, "%s\"%s\"", i ? "," : "",
                                  g.topics[pick[i]]);
    } else {
        for (int i = 0; i < g.n_topics; i++)
            n += (size_t)snprintf(msg + n, sizeof msg - n, "%s\"%s\"", i ? "," : "",
                                  g.topics[i]);
    }
    n += (size_t)snprintf(msg + n, sizeof msg - n, "]");
    if (g.proto)
        n += (size_t)snprintf(msg + n, sizeof msg - n, ",\"protocol\":\"%s\"", g.proto);
    n += (size_t)snprintf(msg + n, sizeof msg - n, "}");
    send_frame(c, 1, msg, n);
}

/* ---- connections ---- */

static void conn_kill(struct conn *c, int failed)
{
    if (c->st == C_DEAD)
        return;
    if (c->st == C_CONNECTING || c->st == C_HANDSHAKE) {
        g.inflight--;
        if (failed)
            g.n_failed++;
    } else if (c->st == C_OPEN) {
        g.n_open--;
    }
    if (c->ev) {
        event_free(c->ev);
        c->ev = NULL;
    }
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->resp);
    c->resp = NULL;
    c->st = C_DEAD;
}

static void on_message(struct conn *c)
{
    const unsigned char *p = c->pre, *end = c->pre + c->pre_len, *q;
    int64_t lat = INT64_MIN, age = INT64_MIN;
    long long seq = -1;

    g.msgs_total++;
    if (c->stalled) {
        g.msgs_stalled++;
        return;
    }
    if ((q = find(p, c->pre_len, "\"timestamp\":\""))) {
        int64_t ts;
        q += 13;
        if (end - q >= 27 && (ts = iso_us((const char *)q, 27)) > 0)
            lat = g.now_real_us - ts;
    }
    if ((q = find(p, c->pre_len, "\"t\":"))) {
        long long t = num_after(q + 4, end);
        if (t >= 0)
            age = g.now_mono_us - t;
        if ((q = find(q, (size_t)(end - q), "\"seq\":")))
            seq = num_after(q + 6, end);
    }
    if (seq >= 0) {
        if (c->last_seq >= 0 && seq > c->last_seq + 1 && g.in_window)
            g.gaps += (uint64_t)(seq - c->last_seq - 1);
        c->last_seq = seq;
    }
    if (!g.in_window)
        return;
    g.msgs++;
    g.bytes += c->plen;
    if (lat != INT64_MIN)
        push(&g.lat, &g.n_lat, &g.cap_lat, lat);
    else
        g.no_stamp++;
    if (age != INT64_MIN)
        push(&g.age, &g.n_age, &g.cap_age, age);
}

static void on_control(struct conn *c)
{
    g.ctrl_frames++;
    if (c->op == 0x9) { /* ping: pong with the same payload */
        g.pings++;
        send_frame(c, 0xA, c->pre, c->pre_len);
    } else if (c->op == 0x8) {
        g.n_closed_by_server++;
        conn_kill(c, 0);
    }
}

/* Feeds received bytes to the frame parser. Returns -1 when c died. */
static int parse(struct conn *c, const unsigned char *d, size_t n)
{
    while (n > 0) {
        if (c->left == 0 && c->hdr_len < c->hdr_need) {
            size_t take = c->hdr_need - c->hdr_len;
            if (take > n)
                take = n;
            memcpy(c->hdr + c->hdr_len, d, take);
            c->hdr_len += (unsigned)take;
            d += take;
            n -= take;
            if (c->hdr_len == 2) {
                unsigned l7 = c->hdr[1] & 0x7f;
                c->hdr_need = 2 +
                              (l7 == 126   ? 2
                               : l7 == 127 ? 8
                                           : 0) +
                              ((c->hdr[1] & 0x80) ? 4 : 0);
            }
            if (c->hdr_len < c->hdr_need)
                continue;
            /* header complete */
            unsigned l7 = c->hdr[1] & 0x7f;
            uint64_t len = l7;
            if (l7 == 126)
                len = (uint64_t)c->hdr[2] << 8 | c->hdr[3];
            else if (l7 == 127) {
                len = 0;
                for (int i = 0; i < 8; i++)
                    len = len << 8 | c->hdr[2 + i];
            }
            c->op = c->hdr[0] & 0x0f;
            c->plen = c->left = len;
            c->pre_len = 0;
            c->hdr_len = 0;
            c->hdr_need = 2;
            if (len == 0) {
                if (c->op >= 0x8)
                    on_control(c);
                else
                    on_message(c);
                if (c->st == C_DEAD)
                    return -1;
            }
            continue;
        }
        /* payload */
        size_t take = c->left < n ? (size_t)c->left : n;
        if (c->pre_len < PREFIX) {
            size_t k = PREFIX - c->pre_len < take ? PREFIX - c->pre_len : take;
            memcpy(c->pre + c->pre_len, d, k);
            c->pre_len += (unsigned)k;
        }
        c->left -= take;
        d += take;
        n -= take;
        if (c->left == 0) {
            if (c->op >= 0x8)
                on_control(c);
            else if (c->op != 0) /* continuation frames: servers here never fragment */
                on_message(c);
            if (c->st == C_DEAD)
                return -1;
        }
    }
    return 0;
}

static void start_more(void);

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    static unsigned char buf[READ_CHUNK];
    struct conn *c = arg;
    ssize_t n;

    n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        conn_kill(c, c->st != C_OPEN);
        start_more();
        return;
    }
    update_now();
    if (c->st == C_HANDSHAKE) {
        char *e;
        c->resp = realloc(c->resp, c->resp_len + (size_t)n + 1);
        memcpy(c->resp + c->resp_len, buf, (size_t)n);
        c->resp_len += (size_t)n;
        c->resp[c->resp_len] = '\0';
        if (!(e = strstr(c->resp, "\r\n\r\n"))) {
            if (c->resp_len > 8192) {
                conn_kill(c, 1);
                start_more();
            }
            return;
        }
        if (strncmp(c->resp, "HTTP/1.1 101", 12) != 0) {
            fprintf(stderr, "bench_client: conn %d: %.*s\n", c->idx,
                    (int)strcspn(c->resp, "\r\n"), c->resp);
            conn_kill(c, 1);
            start_more();
            return;
        }
        size_t head = (size_t)(e - c->resp) + 4, rest = c->resp_len - head;
        c->st = C_OPEN;
        g.inflight--;
        g.n_open++;
        c->hdr_need = 2;
        send_subscribe(c);
        if (rest)
            memmove(buf, c->resp + head, rest);
        free(c->resp);
        c->resp = NULL;
        start_more();
        if (rest && parse(c, buf, rest) < 0)
            return;
        if (c->stalled) {
            /* stop reading for good: the server sees a peer that stalled */
            event_del(c->ev);
        }
        return;
    }
    parse(c, buf, (size_t)n);
}

static void on_connected(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    int err = 0;
    socklen_t len = sizeof err;
    char req[512];
    int n;

    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
        if (g.n_failed < 5)
            fprintf(stderr, "bench_client: connect: %s\n", strerror(err ? err : errno));
        conn_kill(c, 1);
        start_more();
        return;
    }
    {
        struct sockaddr_in a;
        socklen_t al = sizeof a;
        if (getsockname(fd, (struct sockaddr *)&a, &al) == 0)
            c->local_port = ntohs(a.sin_port);
    }
    n = snprintf(req, sizeof req,
                 "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Key: " WS_KEY "\r\n"
                 "Sec-WebSocket-Version: 13\r\n\r\n",
                 g.path, g.host, g.port);
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        conn_kill(c, 1);
        start_more();
        return;
    }
    c->st = C_HANDSHAKE;
    event_free(c->ev);
    c->ev = event_new(g.base, fd, EV_READ | EV_PERSIST, on_readable, c);
    event_add(c->ev, NULL);
}

static void conn_start(struct conn *c)
{
    struct sockaddr_in dst, src;
    int fd, one = 1;

    memset(&dst, 0, sizeof dst);
    dst.sin_family = AF_INET;
    dst.sin_port = htons((uint16_t)g.port);
    inet_pton(AF_INET, g.host, &dst.sin_addr);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        if (g.n_failed < 5)
            fprintf(stderr, "bench_client: socket: %s\n", strerror(errno));
        c->st = C_DEAD;
        g.n_failed++;
        return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (c->stalled) {
        int rcv = 4096; /* the kernel doubles it; keeps the backlog on the server */
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
    }
    if (g.n_src > 1) {
        memset(&src, 0, sizeof src);
        src.sin_family = AF_INET;
        src.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)(c->idx % g.n_src));
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0 && g.n_failed < 5)
            fprintf(stderr, "bench_client: bind: %s\n", strerror(errno));
    }
    c->fd = fd;
    c->st = C_CONNECTING;
    c->last_seq = -1;
    g.inflight++;
    if (connect(fd, (struct sockaddr *)&dst, sizeof dst) < 0 && errno != EINPROGRESS) {
        if (g.n_failed < 5)
            fprintf(stderr, "bench_client: connect: %s\n", strerror(errno));
        conn_kill(c, 1);
        return;
    }
    c->ev = event_new(g.base, fd, EV_WRITE, on_connected, c);
    event_add(c->ev, NULL);
}

static void start_more(void)
{
    while (g.inflight < g.inflight_max && g.next_to_start < g.n) {
        struct conn *c = &g.c[g.next_to_start];
        c->idx = g.next_to_start++;
        c->fd = -1;
        c->stalled = c->idx < g.stall;
        conn_start(c);
    }
}

/* ---- katomon counters: GET /api/v1/ws/subscriptions on the loop ---- */

struct http_get {
    int fd;
    struct event *ev;
    char *buf;
    size_t len;
    char **dst;
    int done;
};

static void http_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct http_get *h = arg;
    char tmp[65536];
    ssize_t n = recv(fd, tmp, sizeof tmp, 0);

    if (n < 0 && errno == EAGAIN)
        return;
    if (n <= 0) {
        event_free(h->ev);
        close(h->fd);
        h->buf = realloc(h->buf, h->len + 1);
        h->buf[h->len] = '\0';
        *h->dst = h->buf;
        h->done = 1;
        return;
    }
    h->buf = realloc(h->buf, h->len + (size_t)n);
    memcpy(h->buf + h->len, tmp, (size_t)n);
    h->len += (size_t)n;
}

static void http_get(struct http_get *h, const char *path, char **dst)
{
    struct sockaddr_in dst_a;
    char req[256];
    int n;

    memset(h, 0, sizeof *h);
    h->dst = dst;
    memset(&dst_a, 0, sizeof dst_a);
    dst_a.sin_family = AF_INET;
    dst_a.sin_port = htons((uint16_t)g.port);
    inet_pton(AF_INET, g.host, &dst_a.sin_addr);
    h->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (h->fd < 0 || connect(h->fd, (struct sockaddr *)&dst_a, sizeof dst_a) < 0) {
        fprintf(stderr, "bench_client: stats: connect: %s\n", strerror(errno));
        if (h->fd >= 0)
            close(h->fd);
        h->done = 1;
        return;
    }
    n = snprintf(req, sizeof req,
                 "GET %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n\r\n", path,
                 g.host, g.port);
    send(h->fd, req, (size_t)n, MSG_NOSIGNAL);
    fcntl(h->fd, F_SETFL, O_NONBLOCK);
    h->ev = event_new(g.base, h->fd, EV_READ | EV_PERSIST, http_read_cb, h);
    event_add(h->ev, NULL);
}

/* ---- running the loop ---- */

static void noop_cb(evutil_socket_t fd, short what, void *arg) {}

/* Machine-noise probe: a 5 ms timer whose lateness, in the window, says how
   often the host (other load, the hypervisor) kept this process off the CPU.
   Latencies measured while the probe is late are the host's, not the
   server's. */
#define PROBE_US 5000
static struct event *probe_ev;
static int64_t probe_due;
static void probe_cb(evutil_socket_t fd, short what, void *arg)
{
    struct timeval tv = {0, PROBE_US};
    int64_t now = (int64_t)(mono_s() * 1e6), late = now - probe_due;

    if (g.in_window && probe_due) {
        if (late > g.probe_max_us)
            g.probe_max_us = late;
        if (late > 20000)
            g.probe_late20++;
    }
    probe_due = now + PROBE_US;
    evtimer_add(probe_ev, &tv);
}

/* Runs the loop for `seconds` (or until *flag when flag is given). */
static void run_for(double seconds, int *flag)
{
    double end = mono_s() + seconds;
    struct event *t = evtimer_new(g.base, noop_cb, NULL);

    while ((!flag || !*flag) && mono_s() < end) {
        double rem = end - mono_s();
        struct timeval tv = {0, (suseconds_t)((rem < 0.05 ? rem : 0.05) * 1e6)};
        evtimer_add(t, &tv);
        event_base_loop(g.base, EVLOOP_ONCE);
        if (g.in_window && g.pid > 0) {
            static double last;
            double now = mono_s();
            if (now - last > 0.25) {
                long r = proc_rss(g.pid);
                if (r > g.rss_max)
                    g.rss_max = r;
                last = now;
            }
        }
    }
    event_free(t);
}

static int all_started(void *unused)
{
    return g.next_to_start >= g.n && g.inflight == 0;
}

/* ---- results ---- */

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static double pct(int32_t *a, size_t n, double p)
{
    if (!n)
        return -1;
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return a[i];
}

static long long stat_num(const char *text, const char *key)
{
    char pat[96];
    const char *p;
    if (!text)
        return -1;
    snprintf(pat, sizeof pat, "\"%s\":", key);
    if (!(p = strstr(text, pat)))
        return -1;
    return strtoll(p + strlen(pat), NULL, 10);
}

/* queued_bytes of the client whose peer is 127.0.0.x:port */
static long long stall_queued(const char *text, uint16_t port)
{
    char pat[64];
    const char *p;
    if (!text || !port)
        return -1;
    snprintf(pat, sizeof pat, ":%u\"", port);
    for (p = strstr(text, pat); p; p = strstr(p + 1, pat)) {
        /* the object around it: find "queued_bytes" in both directions */
        const char *start = p, *end = strchr(p, '}');
        while (start > text && *start != '{')
            start--;
        const char *q = strstr(start, "\"queued_bytes\":");
        if (q && (!end || q < end))
            return strtoll(q + 15, NULL, 10);
    }
    return -1;
}

static void print_results(FILE *f)
{
    static const char *const keys[] = {
        "json_encodes",   "frames_built",    "frames_queued",
        "private_frames", "state_conflated", "state_skipped",
        "closed_slow",    "ticks",           "bus_json_encodes"};
    double w = g.window_real;
    double ccpu = (double)(g.ru1.ru_utime.tv_sec - g.ru0.ru_utime.tv_sec) +
                  (double)(g.ru1.ru_stime.tv_sec - g.ru0.ru_stime.tv_sec) +
                  (double)(g.ru1.ru_utime.tv_usec - g.ru0.ru_utime.tv_usec) / 1e6 +
                  (double)(g.ru1.ru_stime.tv_usec - g.ru0.ru_stime.tv_usec) / 1e6;

    qsort(g.lat, g.n_lat, sizeof *g.lat, cmp_i32);
    qsort(g.age, g.n_age, sizeof *g.age, cmp_i32);
    fprintf(
        f,
        "{\"label\":\"%s\",\"n\":%d,\"open\":%d,\"failed\":%d,\"closed_by_server\":%d,",
        g.label ? g.label : "", g.n, g.n_open, g.n_failed, g.n_closed_by_server);
    fprintf(f, "\"connect_s\":%.3f,\"window_s\":%.3f,", g.t_connect, w);
    fprintf(f, "\"msgs\":%llu,\"bytes\":%llu,\"msgs_per_s\":%.1f,\"bytes_per_s\":%.1f,",
            (unsigned long long)g.msgs, (unsigned long long)g.bytes,
            w > 0 ? (double)g.msgs / w : 0, w > 0 ? (double)g.bytes / w : 0);
    fprintf(f, "\"mean_payload\":%.1f,\"gaps\":%llu,\"no_stamp\":%llu,\"pings\":%llu,",
            g.msgs ? (double)g.bytes / (double)g.msgs : 0, (unsigned long long)g.gaps,
            (unsigned long long)g.no_stamp, (unsigned long long)g.pings);
    fprintf(f,
            "\"lat_p50_us\":%.0f,\"lat_p99_us\":%.0f,\"lat_p999_us\":%.0f,"
            "\"lat_max_us\":%.0f,",
            pct(g.lat, g.n_lat, .5), pct(g.lat, g.n_lat, .99), pct(g.lat, g.n_lat, .999),
            g.n_lat ? (double)g.lat[g.n_lat - 1] : -1);
    fprintf(f,
            "\"age_p50_us\":%.0f,\"age_p99_us\":%.0f,\"age_p999_us\":%.0f,"
            "\"age_max_us\":%.0f,",
            pct(g.age, g.n_age, .5), pct(g.age, g.n_age, .99), pct(g.age, g.n_age, .999),
            g.n_age ? (double)g.age[g.n_age - 1] : -1);
    fprintf(f, "\"server_cpu_s\":%.3f,\"cpu_s_per_M\":%.3f,\"server_cpu_pct\":%.2f,",
            g.cpu1 - g.cpu0, g.msgs ? (g.cpu1 - g.cpu0) / (double)g.msgs * 1e6 : -1,
            w > 0 ? (g.cpu1 - g.cpu0) / w * 100 : -1);
    fprintf(f, "\"server_sched_s\":%.4f,\"sched_s_per_M\":%.3f,", g.sch1 - g.sch0,
            g.msgs ? (g.sch1 - g.sch0) / (double)g.msgs * 1e6 : -1);
    fprintf(f, "\"client_cpu_s\":%.3f,\"probe_max_us\":%lld,\"probe_late20\":%llu,", ccpu,
            (long long)g.probe_max_us, (unsigned long long)g.probe_late20);
    fprintf(f,
            "\"rss_base_kib\":%ld,\"rss_start_kib\":%ld,\"rss_end_kib\":%ld,"
            "\"rss_max_kib\":%ld,\"rss_per_conn_bytes\":%.0f",
            g.rss_base, g.rss0, g.rss1, g.rss_max,
            g.n_open > 0 && g.rss_base > 0
                ? (double)(g.rss1 - g.rss_base) * 1024 / g.n_open
                : -1);
    if (g.km_stats) {
        fprintf(f, ",\"km\":{");
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
            long long a = stat_num(g.stats_before, keys[i]),
                      b = stat_num(g.stats_after, keys[i]);
            fprintf(f, "%s\"%s\":%lld", i ? "," : "", keys[i],
                    a >= 0 && b >= 0 ? b - a : -1);
        }
        fprintf(f, ",\"sets\":%lld,\"span_msgs\":%llu",
                stat_num(g.stats_after, "subscription_sets"),
                (unsigned long long)(g.span_msgs1 - g.span_msgs0));
        if (g.stall > 0)
            fprintf(f, ",\"stalled_queued_bytes\":%lld",
                    stall_queued(g.stats_after, g.c[0].local_port));
        /* absolute, after the window: clients not yet freed, and every client
           ever closed for a full queue (robust.sh: the stallers' fate) */
        fprintf(f, ",\"clients_after\":%lld,\"closed_slow_total\":%lld",
                stat_num(g.stats_after, "count"), stat_num(g.stats_after, "closed_slow"));
        fprintf(f, "}");
    }
    if (g.memcount)
        fprintf(f,
                ",\"copies\":{\"large_calls\":%llu,\"large_bytes\":%llu,"
                "\"small_calls\":%llu,\"small_bytes\":%llu}",
                (unsigned long long)(g.mc1[0] - g.mc0[0]),
                (unsigned long long)(g.mc1[1] - g.mc0[1]),
                (unsigned long long)(g.mc1[2] - g.mc0[2]),
                (unsigned long long)(g.mc1[3] - g.mc0[3]));
    fprintf(f, "}\n");
}

static void usage(void)
{
    fprintf(
        stderr,
        "usage: bench_client -p PORT [-n N] [--path /ws] [--sub a,b,c] [--sub-random K]\n"
        "  [--stall K] [--warmup S] [--duration S] [--pid PID] [--km-stats] [--idle]\n"
        "  [--settle S] [--src K] [--inflight K] [--label L] [--out FILE] [--seed N]\n"
        "  [--memcount FILE] [--proto katomon/1]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"port", 1, 0, 'p'},     {"host", 1, 0, 'H'},
        {"path", 1, 0, 'P'},     {"clients", 1, 0, 'n'},
        {"sub", 1, 0, 's'},      {"sub-random", 1, 0, 'r'},
        {"stall", 1, 0, 'S'},    {"warmup", 1, 0, 'w'},
        {"duration", 1, 0, 'd'}, {"pid", 1, 0, 'i'},
        {"km-stats", 0, 0, 'k'}, {"idle", 0, 0, 'I'},
        {"settle", 1, 0, 'e'},   {"src", 1, 0, 'a'},
        {"inflight", 1, 0, 'f'}, {"label", 1, 0, 'l'},
        {"out", 1, 0, 'o'},      {"seed", 1, 0, 'x'},
        {"memcount", 1, 0, 'm'}, {"proto", 1, 0, 'R'},
        {0, 0, 0, 0}};
    struct rlimit rl;
    int o;

    g.host = "127.0.0.1";
    g.path = "/ws";
    g.n = 1000;
    g.warmup = 2;
    g.duration = 5;
    g.inflight_max = 256;
    g.settle = 1;
    g.seed = 12345;
    while ((o = getopt_long(argc, argv, "p:H:n:", opts, NULL)) != -1) {
        switch (o) {
        case 'p':
            g.port = atoi(optarg);
            break;
        case 'H':
            g.host = optarg;
            break;
        case 'P':
            g.path = optarg;
            break;
        case 'n':
            g.n = atoi(optarg);
            break;
        case 's':
            g.sub = optarg;
            break;
        case 'r':
            g.sub_random = atoi(optarg);
            break;
        case 'S':
            g.stall = atoi(optarg);
            break;
        case 'w':
            g.warmup = atof(optarg);
            break;
        case 'd':
            g.duration = atof(optarg);
            break;
        case 'i':
            g.pid = atoi(optarg);
            break;
        case 'k':
            g.km_stats = 1;
            break;
        case 'I':
            g.idle = 1;
            break;
        case 'e':
            g.settle = atof(optarg);
            break;
        case 'a':
            g.n_src = atoi(optarg);
            break;
        case 'f':
            g.inflight_max = atoi(optarg);
            break;
        case 'l':
            g.label = optarg;
            break;
        case 'o':
            g.out = optarg;
            break;
        case 'x':
            g.seed = (unsigned)atoi(optarg);
            break;
        case 'm':
            g.memcount = optarg;
            break;
        case 'R':
            g.proto = optarg;
            break;
        default:
            usage();
        }
    }
    if (g.port <= 0 || g.n <= 0 || g.n > 100000)
        usage();
    if (g.n_src <= 0)
        g.n_src = 1 + g.n / 15000;
    if (g.sub) {
        char *s = strdup(g.sub), *tok, *save = NULL;
        for (tok = strtok_r(s, ",", &save); tok && g.n_topics < MAX_TOPICS;
             tok = strtok_r(NULL, ",", &save))
            g.topics[g.n_topics++] = tok;
    }
    signal(SIGPIPE, SIG_IGN);
    /* the fd limit: N sockets and a few more */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)g.n + 64) {
        struct rlimit want = rl;
        want.rlim_cur = (rlim_t)g.n + 64;
        if (want.rlim_max < want.rlim_cur)
            want.rlim_max = want.rlim_cur; /* needs CAP_SYS_RESOURCE */
        if (setrlimit(RLIMIT_NOFILE, &want) != 0) {
            rl.rlim_cur = rl.rlim_max; /* the most we may have */
            if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < (rlim_t)g.n + 16)
                die("cannot raise the fd limit to %d (hard limit %llu): raise it with "
                    "ulimit -Hn as root, or use fewer clients",
                    g.n + 64, (unsigned long long)rl.rlim_max);
        }
    }
    if (!(g.base = event_base_new()))
        die("event_base_new");
    if (!(g.c = calloc((size_t)g.n, sizeof *g.c)))
        die("out of memory");

    if (g.pid > 0)
        g.rss_base = proc_rss(g.pid);
    double t0 = mono_s();
    start_more();
    while (!all_started(NULL) && mono_s() - t0 < 120)
        run_for(0.2, NULL);
    g.t_connect = mono_s() - t0;
    if (g.n_open < g.n)
        fprintf(stderr, "bench_client: %d of %d connections open (%d failed)\n", g.n_open,
                g.n, g.n_failed);

    if (g.idle) {
        run_for(g.settle, NULL);
        if (g.pid > 0)
            g.rss1 = g.rss0 = g.rss_max = proc_rss(g.pid);
        g.cpu0 = g.cpu1 = g.pid > 0 ? proc_cpu(g.pid) : 0;
        getrusage(RUSAGE_SELF, &g.ru0);
        g.ru1 = g.ru0;
    } else {
        struct http_get h;
        /* katomon's counters are read before the warm-up (answering the
           request lists every client: with 10,000 that is megabytes of JSON,
           which must not land in the window) and after the window; they are
           divided by the messages received in the same span. */
        if (g.km_stats) {
            http_get(&h, "/api/v1/ws/subscriptions", &g.stats_before);
            run_for(60, &h.done);
            g.span_msgs0 = g.msgs_total;
        }
        run_for(g.warmup, NULL);
        g.cpu0 = g.pid > 0 ? proc_cpu(g.pid) : 0;
        g.sch0 = g.pid > 0 ? proc_sched(g.pid) : 0;
        g.rss_max = g.rss0 = g.pid > 0 ? proc_rss(g.pid) : -1;
        getrusage(RUSAGE_SELF, &g.ru0);
        read_memcount(g.mc0);
        double w0 = mono_s();
        probe_ev = evtimer_new(g.base, probe_cb, NULL);
        probe_cb(-1, 0, NULL);
        g.in_window = 1;
        run_for(g.duration, NULL);
        g.in_window = 0;
        event_free(probe_ev);
        g.window_real = mono_s() - w0;
        g.cpu1 = g.pid > 0 ? proc_cpu(g.pid) : 0;
        g.sch1 = g.pid > 0 ? proc_sched(g.pid) : 0;
        read_memcount(g.mc1);
        g.rss1 = g.pid > 0 ? proc_rss(g.pid) : -1;
        if (g.rss1 > g.rss_max)
            g.rss_max = g.rss1;
        getrusage(RUSAGE_SELF, &g.ru1);
        if (g.km_stats) {
            http_get(&h, "/api/v1/ws/subscriptions", &g.stats_after);
            g.span_msgs1 = g.msgs_total;
            run_for(60, &h.done);
        }
    }
    if (g.out) {
        FILE *f = fopen(g.out, "w");
        if (!f)
            die("cannot write %s: %s", g.out, strerror(errno));
        print_results(f);
        fclose(f);
    } else {
        print_results(stdout);
    }
    /* no orderly close: the server sees EOF/RST, like a browser going away */
    for (int i = 0; i < g.n; i++)
        if (g.c[i].st != C_IDLE && g.c[i].fd >= 0)
            close(g.c[i].fd);
    return g.n_open == g.n ? 0 : 3;
}
