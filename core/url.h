/*
 * url.h - the core's name for the one percent-decoder. The code is
 * header-only in <katomon/url.h> (plugins decode with the same code and
 * link no core object); this header only keeps the core's includes short.
 */
#ifndef KM_URL_H
#define KM_URL_H

#include <katomon/url.h>

#endif /* KM_URL_H */
