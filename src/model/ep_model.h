/* ep_model.h - turning a loaded model into one rank of an expert-parallel job (moe/ep.h). */
#ifndef MOE_MODEL_EP_MODEL_H
#define MOE_MODEL_EP_MODEL_H
#include "model/model.h"
#include "moe/ep.h"

/* Attach ep to every MoE layer of m (ep must outlive m's use) and give back the memory of the routed
 * experts this rank does not own: their pages of weights read into memory (--no-mmap) are released,
 * and mapped ones are never touched. Refuses routers without an expert-parallel form (Soft MoE) and
 * an owner table that does not fit the model. */
moe_status moe_model_ep_attach(moe_model *m, moe_ep *ep);
#endif
