#ifndef PBC_CLIBPQ_SHIM_H
#define PBC_CLIBPQ_SHIM_H

#include <libpq-fe.h>
#include <poll.h>

// The PG_DIAG_* field codes are character literals, which Swift does not
// import; re-export them as constants.
static const int PBC_DIAG_SQLSTATE = PG_DIAG_SQLSTATE;
static const int PBC_DIAG_MESSAGE_PRIMARY = PG_DIAG_MESSAGE_PRIMARY;
static const int PBC_DIAG_MESSAGE_DETAIL = PG_DIAG_MESSAGE_DETAIL;
static const int PBC_DIAG_MESSAGE_HINT = PG_DIAG_MESSAGE_HINT;
static const int PBC_DIAG_CONSTRAINT_NAME = PG_DIAG_CONSTRAINT_NAME;
static const int PBC_DIAG_TABLE_NAME = PG_DIAG_TABLE_NAME;
static const int PBC_DIAG_COLUMN_NAME = PG_DIAG_COLUMN_NAME;
static const int PBC_DIAG_SEVERITY_NONLOCALIZED = PG_DIAG_SEVERITY_NONLOCALIZED;

#endif
