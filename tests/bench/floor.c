/*
 * floor.c - the floor of the fan-out benchmark: the least work a server
 * can do to put the same bytes in front of N WebSocket clients.
 *
 * epoll, one thread. It accepts connections, answers the WebSocket
 * handshake minimally (reads the request head, computes
 * Sec-WebSocket-Accept, writes the 101), then ignores what clients send
 * (read and dropped: no frame parsing, no pongs - the load client never
 * pings). Every 1/hz seconds (timerfd) it builds ONE frame - the same
 * realtime_update text katomon sends, {"type":"realtime_update",
 * "timestamp":"<now>","data":{"bench":{"t":T,"seq":S,"pad":"..."}}},
 * padded to --size payload bytes - and write()s that same buffer to every
 * open socket: one syscall per client per message, no copy, no queue.
 *
 * A client whose socket cannot take the whole frame keeps the rest
 * pending (EPOLLOUT finishes it); frames published while one is pending
 * are skipped for that client (bounded memory: one frame). That is the
 * floor's only concession to slow clients.
 *
 * usage: floor -p PORT [--hz R] [--size BYTES]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "ws_handshake.h" /* km_ws_accept_key only */

enum { F_HANDSHAKE = 1, F_OPEN = 2 };
#define REQ_MAX 2048

struct fconn {
    int fd;
    int st;
    char *req; /* handshake request so far (freed once open) */
    size_t req_len;
    const unsigned char *pend; /* rest of a frame the socket did not take */
    size_t pend_len;
    unsigned char *pend_buf; /* its own copy (the shared frame changes) */
    struct fconn *next, *prev;
};

static struct fconn *conns; /* open clients */
static int epfd;
static unsigned long long skipped;

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static int64_t clock_us(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void fconn_close(struct fconn *c)
{
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    if (c->st == F_OPEN) {
        if (c->prev)
            c->prev->next = c->next;
        else
            conns = c->next;
        if (c->next)
            c->next->prev = c->prev;
    }
    free(c->pend_buf);
    free(c->req);
    free(c);
}

static void handshake(struct fconn *c)
{
    char *key, *end, accept[29], resp[256], k[64];
    int n;

    c->req[c->req_len] = '\0';
    if (!strstr(c->req, "\r\n\r\n")) {
        if (c->req_len >= REQ_MAX - 1)
            fconn_close(c);
        return;
    }
    key = strcasestr(c->req, "\r\nSec-WebSocket-Key:");
    if (!key) {
        fconn_close(c);
        return;
    }
    key += 20;
    key += strspn(key, " ");
    end = strstr(key, "\r\n");
    n = (int)(end - key);
    if (n <= 0 || n >= (int)sizeof k) {
        fconn_close(c);
        return;
    }
    memcpy(k, key, (size_t)n);
    k[n] = '\0';
    km_ws_accept_key(k, accept);
    n = snprintf(resp, sizeof resp,
                 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                 accept);
    if (write(c->fd, resp, (size_t)n) != n) {
        fconn_close(c);
        return;
    }
    c->st = F_OPEN;
    free(c->req);
    c->req = NULL;
    c->next = conns;
    c->prev = NULL;
    if (conns)
        conns->prev = c;
    conns = c;
}

static void on_read(struct fconn *c)
{
    char buf[4096];
    for (;;) {
        ssize_t n;
        if (c->st == F_HANDSHAKE)
            n = read(c->fd, c->req + c->req_len, REQ_MAX - 1 - c->req_len);
        else
            n = read(c->fd, buf, sizeof buf); /* dropped: no protocol work */
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            fconn_close(c);
            return;
        }
        if (n < 0)
            return;
        if (c->st == F_HANDSHAKE) {
            c->req_len += (size_t)n;
            handshake(c);
            return;
        }
    }
}

static void set_out(struct fconn *c, int on)
{
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void on_write(struct fconn *c)
{
    ssize_t n = write(c->fd, c->pend, c->pend_len);
    if (n < 0) {
        if (errno != EAGAIN)
            fconn_close(c);
        return;
    }
    c->pend += n;
    c->pend_len -= (size_t)n;
    if (!c->pend_len) {
        free(c->pend_buf);
        c->pend_buf = NULL;
        set_out(c, 0);
    }
}

/* The frame of this tick, built once. */
static size_t build(unsigned char *frame, size_t size, unsigned long long seq)
{
    static const char pre[] = "{\"type\":\"realtime_update\",\"timestamp\":\"";
    int64_t real = clock_us(CLOCK_REALTIME), t = clock_us(CLOCK_MONOTONIC);
    time_t sec = (time_t)(real / 1000000);
    struct tm tm;
    char ts[40], head[256];
    int hl;
    size_t hdr = size < 126 ? 2 : size < 65536 ? 4 : 10, pad;
    unsigned char *p = frame + hdr;

    gmtime_r(&sec, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    hl =
        snprintf(head, sizeof head,
                 "%s%s.%06lldZ\",\"data\":{\"bench\":{\"t\":%lld,\"seq\":%llu,\"pad\":\"",
                 pre, ts, (long long)(real % 1000000), (long long)t, seq);
    pad = size - (size_t)hl - 4; /* "}}}  with the closing quote */
    memcpy(p, head, (size_t)hl);
    memset(p + hl, 'x', pad);
    memcpy(p + hl + pad, "\"}}}", 4);
    frame[0] = 0x81;
    if (hdr == 2) {
        frame[1] = (unsigned char)size;
    } else if (hdr == 4) {
        frame[1] = 126;
        frame[2] = (unsigned char)(size >> 8);
        frame[3] = (unsigned char)size;
    } else {
        frame[1] = 127;
        for (int i = 0; i < 8; i++)
            frame[2 + i] = (unsigned char)((uint64_t)size >> (56 - 8 * i));
    }
    return hdr + size;
}

static void broadcast(const unsigned char *frame, size_t len)
{
    for (struct fconn *c = conns, *next; c; c = next) {
        next = c->next;
        if (c->pend_len) {
            skipped++;
            continue;
        }
        ssize_t n = write(c->fd, frame, len);
        if (n == (ssize_t)len)
            continue;
        if (n < 0 && errno != EAGAIN)
            continue; /* a dead peer: its EPOLLHUP/EPOLLERR closes it (not here:
                         it may still be in this round's event list) */
        if (n < 0)
            n = 0;
        if (n == 0) {
            skipped++; /* nothing of it left: the whole frame can be skipped */
            continue;
        }
        c->pend_len = len - (size_t)n;
        c->pend_buf = malloc(c->pend_len);
        memcpy(c->pend_buf, frame + n, c->pend_len);
        c->pend = c->pend_buf;
        set_out(c, 1);
    }
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"port", 1, 0, 'p'}, {"hz", 1, 0, 'r'}, {"size", 1, 0, 's'}, {0, 0, 0, 0}};
    int port = 0, lfd, tfd, one = 1, o;
    double hz = 10;
    size_t size = 2048;
    struct sockaddr_in a;
    struct rlimit rl;
    unsigned char *frame;
    unsigned long long seq = 0;
    static int listen_tag, timer_tag;

    while ((o = getopt_long(argc, argv, "p:", opts, NULL)) != -1) {
        if (o == 'p')
            port = atoi(optarg);
        else if (o == 'r')
            hz = atof(optarg);
        else if (o == 's')
            size = (size_t)atol(optarg);
        else
            return 2;
    }
    if (size < 256)
        size = 256;
    signal(SIGPIPE, SIG_IGN);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536) {
        struct rlimit want = {65536, rl.rlim_max > 65536 ? rl.rlim_max : 65536};
        if (setrlimit(RLIMIT_NOFILE, &want) != 0) { /* no CAP_SYS_RESOURCE */
            rl.rlim_cur = rl.rlim_max;
            setrlimit(RLIMIT_NOFILE, &rl);
        }
    }
    frame = malloc(size + 16);
    if ((epfd = epoll_create1(EPOLL_CLOEXEC)) < 0)
        die("epoll_create1");
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 4096) < 0)
        die("listen");
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &listen_tag};
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);
    if (hz > 0) {
        struct itimerspec its;
        double iv = 1.0 / hz;
        tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        its.it_interval.tv_sec = (time_t)iv;
        its.it_interval.tv_nsec = (long)((iv - (double)(time_t)iv) * 1e9);
        its.it_value = its.it_interval;
        timerfd_settime(tfd, 0, &its, NULL);
        ev.data.ptr = &timer_tag;
        epoll_ctl(epfd, EPOLL_CTL_ADD, tfd, &ev);
    } else {
        tfd = -1;
    }
    fprintf(stderr, "floor: listening on 127.0.0.1:%d, %g Hz, %zu bytes\n", port, hz,
            size);
    for (;;) {
        struct epoll_event evs[256];
        int n = epoll_wait(epfd, evs, 256, -1);
        if (n < 0 && errno == EINTR)
            continue;
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &listen_tag) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >=
                       0) {
                    struct fconn *c = calloc(1, sizeof *c);
                    c->fd = fd;
                    c->st = F_HANDSHAKE;
                    c->req = malloc(REQ_MAX);
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct epoll_event cev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &cev);
                }
            } else if (p == &timer_tag) {
                uint64_t exp;
                if (read(tfd, &exp, sizeof exp) == sizeof exp) {
                    size_t len = build(frame, size, ++seq);
                    broadcast(frame, len);
                }
            } else {
                struct fconn *c = p;
                if (evs[i].events & (EPOLLOUT) && c->pend_len) {
                    on_write(c);
                    continue; /* c may be gone; a read waits for the next round */
                }
                if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                    on_read(c);
            }
        }
    }
}
