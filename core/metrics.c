/*
 * metrics.c - the Prometheus text exposition of the series registry (see
 * metrics.h).
 *
 * Where the time goes: printf's "%.17g" costs about a microsecond and a
 * half here, which alone would make 10,000 series take 15 ms. So values
 * are formatted by hand: integers with an integer conversion, the others
 * by scaling to 15 significant digits in extended precision and keeping
 * them when dividing back (one correctly rounded double operation, so the
 * very result strtod gives) returns the same double; else 17 digits,
 * which always parse back (the proof is at km_digits). printf stays the
 * fallback for values outside 1e-7..1e19 and where long double has no
 * 64-bit significand (other platforms, valgrind).
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

/* ---- values ---- */

/* 10^0 .. 10^22: every one an exact double (5^22 < 2^53). */
static const double km_pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                  1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                  1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* The hand formatter needs a 64-bit significand and double arithmetic that
   rounds to double (no excess precision). */
#if LDBL_MANT_DIG >= 64 && FLT_EVAL_METHOD == 0
#define KM_FAST_DIGITS 1

/* 10^0 .. 10^27: exact in a 64-bit significand (5^27 < 2^64). */
static const long double km_pow10l[] = {1e0L,  1e1L,  1e2L,  1e3L,  1e4L,  1e5L,  1e6L,
                                        1e7L,  1e8L,  1e9L,  1e10L, 1e11L, 1e12L, 1e13L,
                                        1e14L, 1e15L, 1e16L, 1e17L, 1e18L, 1e19L, 1e20L,
                                        1e21L, 1e22L, 1e23L, 1e24L, 1e25L, 1e26L, 1e27L};

/* Powers of ten as integers, for the digit counts. */
static const uint64_t km_pow10u[] = {1ull,
                                     10ull,
                                     100ull,
                                     1000ull,
                                     10000ull,
                                     100000ull,
                                     1000000ull,
                                     10000000ull,
                                     100000000ull,
                                     1000000000ull,
                                     10000000000ull,
                                     100000000000ull,
                                     1000000000000ull,
                                     10000000000000ull,
                                     100000000000000ull,
                                     1000000000000000ull,
                                     10000000000000000ull,
                                     100000000000000000ull};

/* 1 when long double really carries 64 bits: valgrind, for one, runs x87
   arithmetic in double precision, and 17 digits would then be unproven.
   Asked once: it is the process's. */
static int km_extended_ok(void)
{
    static int ok = -1;
    if (ok < 0) {
        volatile long double x = 1.0L;
        x += 0x1p-60L;
        ok = x != 1.0L;
    }
    return ok;
}

/* a * 10^k rounded once to 64 bits (|k| <= 27, checked by the caller). */
static long double km_scale(double a, int k)
{
    return k >= 0 ? (long double)a * km_pow10l[k] : (long double)a / km_pow10l[-k];
}

/* The n significant digits of a > 0 (10^(n-1) <= result < 10^n), moving
   the decimal exponent *e when the first guess was one off; 0 when the
   scale leaves the table. */
static uint64_t km_sig(double a, int n, int *e)
{
    for (int i = 0; i < 3; i++) {
        int k = n - 1 - *e;
        if (k > 27 || k < -27)
            return 0;
        uint64_t r = (uint64_t)(km_scale(a, k) + 0.5L);
        if (r >= km_pow10u[n])
            (*e)++;
        else if (r < km_pow10u[n - 1])
            (*e)--;
        else
            return r;
    }
    return 0;
}

/*
 * The digits of a (1e-7 <= a < 1e19) that parse back to a: into d (no
 * trailing zeros), their count into *n and the exponent of the first into
 * *e. Returns 0, or -1 when the fallback must do it.
 *
 * 17 digits need no check: rounding to 17 digits errs by at most
 * 0.5e-16 * a, extended precision adds 2^-64 * a, and half the gap to the
 * next double is more than 2^-54 * a = 5.55e-17 * a, so the nearest double
 * to the digits is a (the argument behind printf's %.17g, with margin).
 */
static int km_digits(double a, char *d, int *n, int *e)
{
    uint64_t r;
    int k;

    *e = (int)floor(log10(a));
    r = km_sig(a, 15, e);
    k = 14 - *e;
    if (!r || k > 22 || k < -22)
        return -1;
    /* (double)r is exact (r < 2^53) and so is 10^|k|: one rounding, as
       strtod's */
    double back = k >= 0 ? (double)r / km_pow10[k] : (double)r * km_pow10[-k];
    *n = 15;
    if (back != a) {
        if (!(r = km_sig(a, 17, e)))
            return -1;
        *n = 17;
    }
    while (r % 10 == 0) {
        r /= 10;
        (*n)--;
    }
    for (int i = *n - 1; i >= 0; i--, r /= 10)
        d[i] = (char)('0' + r % 10);
    return 0;
}

/* Writes digits d (n of them, the first at 10^e) as a decimal: fixed
   notation from 1e-5 to 1e21, else d.ddde+XX. Returns the end. */
static char *km_place(char *p, const char *d, int n, int e)
{
    if (e >= 0 && e < 21) {
        for (int i = 0; i <= e; i++)
            *p++ = i < n ? d[i] : '0';
        if (n > e + 1) {
            *p++ = '.';
            memcpy(p, d + e + 1, (size_t)(n - e - 1));
            p += n - e - 1;
        }
    } else if (e < 0 && e >= -5) {
        *p++ = '0';
        *p++ = '.';
        for (int i = -1; i > e; i--)
            *p++ = '0';
        memcpy(p, d, (size_t)n);
        p += n;
    } else {
        *p++ = d[0];
        if (n > 1) {
            *p++ = '.';
            memcpy(p, d + 1, (size_t)(n - 1));
            p += n - 1;
        }
        p += sprintf(p, "e%c%02d", e < 0 ? '-' : '+', e < 0 ? -e : e);
    }
    return p;
}
#endif /* KM_FAST_DIGITS */

/* u in decimal at p; returns the end. */
static char *km_u64(char *p, uint64_t u)
{
    char tmp[20];
    int n = 0;

    do
        tmp[n++] = (char)('0' + u % 10);
    while ((u /= 10));
    while (n)
        *p++ = tmp[--n];
    return p;
}

/* printf's way: 15 digits when they parse back, else 17. */
static size_t km_value_printf(double v, char *buf)
{
    int n = snprintf(buf, KM_METRICS_VALUE_MAX, "%.15g", v);
    if (strtod(buf, NULL) != v)
        n = snprintf(buf, KM_METRICS_VALUE_MAX, "%.17g", v);
    return (size_t)n;
}

size_t km_metrics_value(double v, char *buf)
{
    char *p = buf;
    double a = fabs(v);

    if (isnan(v))
        return (size_t)sprintf(buf, "NaN");
    if (isinf(v))
        return (size_t)sprintf(buf, v > 0 ? "+Inf" : "-Inf");
    if (v < 0)
        *p++ = '-';
    /* an integer below 2^63: exact as an integer, no exponent */
    if (a < 9.2e18 && a == (double)(uint64_t)a) {
        p = km_u64(p, (uint64_t)a);
        *p = '\0';
        return (size_t)(p - buf);
    }
#ifdef KM_FAST_DIGITS
    char d[20] = {0};
    int n, e;
    if (a >= 1e-7 && a < 1e19 && km_extended_ok() && km_digits(a, d, &n, &e) == 0) {
        p = km_place(p, d, n, e);
        *p = '\0';
        return (size_t)(p - buf);
    }
#endif
    return km_value_printf(v, buf);
}

/* ---- the text ---- */

/* Room for n more bytes and the NUL; 0, or -1 on ENOMEM. */
static int km_text_reserve(struct km_metrics_text *t, size_t n)
{
    size_t cap = t->cap ? t->cap : 64 * 1024;

    if (t->cap - t->len > n)
        return 0;
    while (cap - t->len <= n) {
        if (cap > SIZE_MAX / 2)
            return -1;
        cap *= 2;
    }
    char *d = realloc(t->data, cap);
    if (!d)
        return -1;
    t->data = d;
    t->cap = cap;
    return 0;
}

static char *km_put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

/* # HELP and # TYPE of f. */
static int km_put_family(struct km_metrics_text *t, const struct km_family *f)
{
    const char *help = f->help ? f->help : "";
    size_t nl = strlen(f->name), hl = strlen(help);

    if (km_text_reserve(t, 2 * nl + 2 * hl + 32) != 0)
        return -1;
    char *p = km_put(t->data + t->len, "# HELP ", 7);
    p = km_put(p, f->name, nl);
    if (hl)
        *p++ = ' ';
    for (const char *h = help; *h; h++) {
        if (*h == '\\' || *h == '\n') {
            *p++ = '\\';
            *p++ = *h == '\n' ? 'n' : '\\';
        } else {
            *p++ = *h;
        }
    }
    p = km_put(p, "\n# TYPE ", 8);
    p = km_put(p, f->name, nl);
    if (f->type == KM_SERIES_COUNTER)
        p = km_put(p, " counter\n", 9);
    else
        p = km_put(p, " gauge\n", 7);
    t->len = (size_t)(p - t->data);
    return 0;
}

/* name{labels} value */
static int km_put_series(struct km_metrics_text *t, const char *name, size_t nl,
                         const struct km_series *s)
{
    size_t ll = s->labels ? strlen(s->labels) : 0;

    if (km_text_reserve(t, nl + ll + 4 + KM_METRICS_VALUE_MAX) != 0)
        return -1;
    char *p = km_put(t->data + t->len, name, nl);
    if (ll) {
        *p++ = '{';
        p = km_put(p, s->labels, ll);
        *p++ = '}';
    }
    *p++ = ' ';
    p += km_metrics_value(s->value, p);
    *p++ = '\n';
    t->len = (size_t)(p - t->data);
    t->series++;
    return 0;
}

/* Every live series of f, after its HELP and TYPE; nothing when none. */
static int km_put_family_series(struct km_metrics_text *t, const struct km_family *f)
{
    size_t nl = strlen(f->name);
    int head = 0;

    for (const struct km_series *s = f->first; s; s = s->next) {
        if (!s->live)
            continue;
        if (!head && km_put_family(t, f) != 0)
            return -1;
        head = 1;
        if (km_put_series(t, f->name, nl, s) != 0)
            return -1;
    }
    return 0;
}

int km_metrics_render(const struct km_series_reg *reg, struct km_metrics_text *out)
{
    memset(out, 0, sizeof *out);
    if (km_text_reserve(out, 0) != 0)
        return -1;
    /* the registry's walk takes a non-const pointer; nothing is changed */
    for (const struct km_family *f = km_series_families((struct km_series_reg *)reg); f;
         f = f->next)
        if (km_put_family_series(out, f) != 0) {
            km_metrics_text_free(out);
            return -1;
        }
    out->data[out->len] = '\0';
    return 0;
}

int km_metrics_scrape(struct km_series_reg *reg, struct km_metrics_text *out)
{
    km_series_collect(reg);
    return km_metrics_render(reg, out);
}

void km_metrics_text_free(struct km_metrics_text *out)
{
    free(out->data);
    memset(out, 0, sizeof *out);
}
