/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The reaper removes rules whose target socket has closed. A socket gives
 * no notice when its last file goes away, so a namespace with socket rules
 * checks them twice a second, and at once when a packet finds a closed
 * target or a dump is about to list one.
 */
#ifndef _PD_REAPER_H
#define _PD_REAPER_H

struct pd_net;
struct work_struct;

void pd_reaper_work(struct work_struct *work);
void pd_reap_locked(struct pd_net *pn);
void pd_reaper_arm(struct pd_net *pn);
void pd_reaper_kick(struct pd_net *pn);
void pd_reaper_bill_current(struct pd_net *pn);
void pd_reaper_release(struct pd_net *pn);
void pd_reapers_stop(void);

#endif /* _PD_REAPER_H */
