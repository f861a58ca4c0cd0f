export * from "./ChangeContext.ts"
export * from "./MerchantRepository.ts"
export * from "./PaymentRepository.ts"
export * from "./PaymentRows.ts"
